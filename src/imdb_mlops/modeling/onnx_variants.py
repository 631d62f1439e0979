"""The classifier as ONNX: export, optimization, quantization, sessions, parity and latency.

Variants (:func:`build_variants`):

- ``fp32``: ``torch.onnx.export`` of a copy loaded with eager attention (dynamic batch and
  sequence axes; ``input_ids``, ``attention_mask`` -> ``logits``), then ONNX Runtime's
  transformer optimizer (fused Attention, SkipLayerNormalization, ... nodes);
- ``int8``: ``onnxruntime.quantization.quantize_dynamic`` of the optimized graph, for CPU;
- ``fp16``: the optimized graph in half precision, only when exported on a GPU.

Each variant is compared with PyTorch (:func:`parity_figures`) against thresholds from params
(:func:`parity_failures`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imdb_mlops.config import ExportConfig

INPUT_NAMES = ["input_ids", "attention_mask"]


def execution_provider() -> str:
    """CUDA when a GPU is present and onnxruntime-gpu can use it, else CPU."""
    import onnxruntime as ort
    import torch

    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        return "CUDAExecutionProvider"
    return "CPUExecutionProvider"


def build_variants(model: Any, work: Path, opset: int, gpu: bool) -> dict[str, Path]:
    """fp32 (optimized), int8 (dynamic quantization) and, on a GPU, fp16."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    raw = work / "model.raw.onnx"
    dummy = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        model,
        (dummy, torch.ones_like(dummy)),
        str(raw),
        input_names=INPUT_NAMES,
        output_names=["logits"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {"logits": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    config = model.config
    heads = getattr(config, "num_attention_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    optimized = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden, use_gpu=gpu)
    fp32 = work / "model.fp32.onnx"
    optimized.save_model_to_file(str(fp32))
    int8 = work / "model.int8.onnx"
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    variants = {"fp32": fp32, "int8": int8}
    if gpu:
        optimized.convert_float_to_float16(keep_io_types=True)
        fp16 = work / "model.fp16.onnx"
        optimized.save_model_to_file(str(fp16))
        variants["fp16"] = fp16
    return variants


def make_session(path: Path, provider: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if provider == "CPUExecutionProvider":
        return ort.InferenceSession(str(path), options, providers=[provider])
    # TF32 matmuls would move fp32 logits by ~1e-3 and fail the fp32 parity gate; fp16 is the fast variant.
    providers = [(provider, {"use_tf32": 0}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def _batches(tokenizer: Any, ids: list[list[int]], batch_size: int) -> Iterator[Any]:
    for start in range(0, len(ids), batch_size):
        yield tokenizer.pad({"input_ids": ids[start : start + batch_size]}, return_tensors="np")


def torch_logits(model: Any, tokenizer: Any, ids: list[list[int]], batch_size: int = 32) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for batch in _batches(tokenizer, ids, batch_size):
            tensors = {k: torch.from_numpy(v) for k, v in batch.items() if k in INPUT_NAMES}
            out.append(model(**tensors).logits.float().numpy())
    return np.concatenate(out)


def onnx_logits(session: Any, tokenizer: Any, ids: list[list[int]], batch_size: int = 32) -> np.ndarray:
    out = []
    for batch in _batches(tokenizer, ids, batch_size):
        feed = {k: batch[k].astype(np.int64) for k in INPUT_NAMES}
        out.append(session.run(["logits"], feed)[0].astype(np.float32))
    return np.concatenate(out)


def parity_figures(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    ref_pred, pred = reference.argmax(1), logits.argmax(1)
    return {
        "max_abs_diff": float(np.abs(reference - logits).max()),
        "agreement": float((ref_pred == pred).mean()),
        "accuracy": float((pred == labels).mean()),
        "torch_accuracy": float((ref_pred == labels).mean()),
    }


def parity_failures(variant: str, parity: dict[str, float], cfg: ExportConfig) -> list[str]:
    """The thresholds ``variant`` misses, each with its figure; empty when it passes."""
    failures = []
    if variant == "fp32":
        if parity["max_abs_diff"] > cfg.fp32_max_abs_diff:
            failures.append(f"max |logit diff| {parity['max_abs_diff']:.2e} > {cfg.fp32_max_abs_diff:.0e}")
        if parity["agreement"] < cfg.fp32_min_agreement:
            failures.append(f"agreement {parity['agreement']:.2%} < {cfg.fp32_min_agreement:.2%}")
        return failures
    min_agreement = cfg.int8_min_agreement if variant == "int8" else cfg.fp16_min_agreement
    if parity["agreement"] < min_agreement:
        failures.append(f"agreement {parity['agreement']:.2%} < {min_agreement:.2%}")
    drop = parity["torch_accuracy"] - parity["accuracy"]
    if drop > cfg.max_accuracy_drop:
        failures.append(f"accuracy drop {drop * 100:.2f} points > {cfg.max_accuracy_drop * 100:.2f}")
    return failures


def latency(session: Any, tokenizer: Any, ids: list[list[int]]) -> dict[str, float]:
    """Median latency at batch 1 and texts/s at batch 1 and 32, on ``ids``, after one untimed pass
    (the CUDA provider picks kernels per input shape on first sight)."""
    figures: dict[str, float] = {}
    for batch_size in (1, 32):
        onnx_logits(session, tokenizer, ids, batch_size)  # warm-up over every shape timed below
        timings = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            began = time.perf_counter()
            onnx_logits(session, tokenizer, chunk, batch_size)
            timings.append(time.perf_counter() - began)
        figures[f"batch{batch_size}_texts_per_s"] = round(len(ids) / sum(timings), 2)
        if batch_size == 1:
            figures["batch1_latency_ms_p50"] = round(float(np.median(timings)) * 1000, 2)
    return figures

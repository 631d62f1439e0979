"""Export stage: the trained classifier as ONNX, optimized, quantized, and gated on parity.

Entry point: :func:`export`. Variants:

- ``fp32``: ``torch.onnx.export`` of a copy loaded with eager attention (dynamic batch and
  sequence axes; ``input_ids``, ``attention_mask`` -> ``logits``), then ONNX Runtime's
  transformer optimizer (fused Attention, SkipLayerNormalization, ... nodes);
- ``int8``: ``onnxruntime.quantization.quantize_dynamic`` of the optimized graph, for CPU;
- ``fp16``: the optimized graph in half precision, only when exported on a GPU.

Parity gate: each variant predicts ``export.parity_samples`` validation reviews and is compared
with PyTorch (max |logit difference|, prediction agreement, accuracy) against thresholds from
params. A variant that fails is not shipped and the stage says which and by how much; when no
variant passes the stage fails. ``reports/onnx.json`` holds, per variant, size, parity figures
and latency/throughput at batch 1 and 32 on this machine, with the execution provider used.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from imdb_mlops.config import ExportConfig, Params
from imdb_mlops.errors import PipelineError
from imdb_mlops.outputs import atomic_outputs, write_json

console = Console(stderr=True)
INPUT_NAMES = ["input_ids", "attention_mask"]


def execution_provider() -> str:
    """CUDA when a GPU is present and onnxruntime-gpu can use it, else CPU."""
    import onnxruntime as ort
    import torch

    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        return "CUDAExecutionProvider"
    return "CPUExecutionProvider"


def export(
    params: Params,
    model_dir: Path,
    tokenized_dir: Path,
    out_dir: Path,
    report_path: Path,
    run_file: Path | None = None,
) -> dict[str, Any]:
    """Run the stage: write the passing variants to ``out_dir`` and the report; with ``run_file``
    (``reports/train_run.json``), log the parity and latency figures into the training run."""
    from datasets import load_from_disk

    cfg = params.export
    provider = execution_provider()
    validation = load_from_disk(str(tokenized_dir))["validation"]
    sample = validation.select(range(min(cfg.parity_samples, len(validation))))
    ids, labels = sample["input_ids"], np.asarray(sample["label"])

    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        work = Path(tmp)
        model, tokenizer = _load_eager(model_dir)
        torch_logits = _torch_logits(model, tokenizer, ids)
        candidates = build_variants(model, work, cfg.opset, gpu=provider == "CUDAExecutionProvider")
        report: dict[str, Any] = {"provider": provider, "parity_samples": len(ids), "variants": {}}
        shipped = []
        for name, path in candidates.items():
            session = make_session(path, provider)
            logits = onnx_logits(session, tokenizer, ids)
            parity = parity_figures(torch_logits, logits, labels)
            failures = gate(name, parity, cfg)
            entry = {"size_mb": round(path.stat().st_size / 2**20, 2), **parity, "shipped": not failures}
            if failures:
                entry["failed"] = failures
                console.print(f"[bold red]{name} not shipped:[/] {'; '.join(failures)}")
            else:
                entry.update(latency(session, tokenizer, ids[: cfg.latency_samples]))
                shipped.append(name)
            report["variants"][name] = entry
        if not shipped:
            reasons = "; ".join(f"{n}: {', '.join(v['failed'])}" for n, v in report["variants"].items())
            raise PipelineError(f"export: no ONNX variant passed the parity gate ({reasons})")
        report["shipped"] = shipped
        with atomic_outputs(out_dir, report_path) as (tmp_out, tmp_report):
            tmp_out.mkdir()
            for name in shipped:
                shutil.copy2(candidates[name], tmp_out / f"model.{name}.onnx")
            tokenizer.save_pretrained(tmp_out)
            write_json(tmp_out / "export.json", {"provider": provider, "shipped": shipped, "labels": ["negative", "positive"]})
            write_json(tmp_report, report)
    if run_file is not None:
        log_to_run(params, run_file, report, report_path)
    _print_report(report)
    return report


def log_to_run(params: Params, run_file: Path, report: dict[str, Any], report_path: Path) -> None:
    import mlflow

    from imdb_mlops.tracking import read_run_file, setup_mlflow

    run_id = read_run_file(run_file)["run_id"]
    setup_mlflow(params)
    with mlflow.start_run(run_id=run_id):
        figures = {
            f"onnx_{name}_{key}": float(value)
            for name, variant in report["variants"].items()
            for key, value in variant.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        mlflow.log_metrics(figures)
        mlflow.set_tags({"onnx.provider": report["provider"], "onnx.shipped": ",".join(report["shipped"])})
        mlflow.log_artifact(str(report_path), "export")


def _load_eager(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise PipelineError(f"{model_dir}: no trained model (config.json missing); run the train stage first")
    # Eager attention exports as plain MatMul/Softmax, which the ORT optimizer fuses; SDPA does not.
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(str(model_dir))


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
        str(fp32), str(int8), weight_type=QuantType.QInt8,
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


def _batches(tokenizer: Any, ids: list[list[int]], batch_size: int) -> Any:
    for start in range(0, len(ids), batch_size):
        yield tokenizer.pad({"input_ids": ids[start : start + batch_size]}, return_tensors="np")


def _torch_logits(model: Any, tokenizer: Any, ids: list[list[int]], batch_size: int = 32) -> np.ndarray:
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


def gate(variant: str, parity: dict[str, float], cfg: ExportConfig) -> list[str]:
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


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"ONNX variants ({report['provider']}, {report['parity_samples']} validation reviews)")
    for column in ("variant", "shipped", "size MB", "max |diff|", "agreement", "accuracy", "b1 ms", "b32 texts/s"):
        table.add_column(column, justify="left" if column in ("variant", "shipped") else "right")
    for name, v in report["variants"].items():
        table.add_row(
            name, "yes" if v["shipped"] else "[red]no[/]", f"{v['size_mb']:.1f}", f"{v['max_abs_diff']:.1e}",
            f"{v['agreement']:.2%}", f"{v['accuracy']:.2%}", str(v.get("batch1_latency_ms_p50", "-")),
            str(v.get("batch32_texts_per_s", "-")),
        )
    console.print(table)

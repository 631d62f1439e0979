"""The classifier's variants as runnable things, one interface for all: token ids in, logits out.

A *variant* is a way of running the same trained classifier:

- ``fp32``, ``int8``, ``fp16``: ONNX files (``model.<variant>.onnx``) run by ONNX Runtime;
- ``torch_bf16``: the PyTorch checkpoint (safetensors) with its weights cast to bfloat16, for CPUs
  with native bf16 (AMX or AVX-512 BF16) and GPUs.

The export stage scores every candidate through these runners, and the served model runs the one
:func:`choose_fastest` measures fastest on the machine it loads on; both use
:func:`predict_logits` (length-sorted batches, padded only to the longest review in each).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imdb_mlops.modeling.capabilities import Capabilities, detect

ONNX_VARIANTS = ("fp32", "int8", "fp16")
TORCH_VARIANTS = ("torch_bf16",)
INPUT_NAMES = ("input_ids", "attention_mask")


@dataclass
class Runner:
    """A loaded variant: ``logits(input_ids, attention_mask)`` on int64 arrays."""

    variant: str
    device: str  # "cpu" or "cuda"
    logits: Callable[[np.ndarray, np.ndarray], np.ndarray]


def usable_variants(shipped: list[str], caps: Capabilities, gpu: bool, int8_bits: int | None = None) -> list[str]:
    """Those of ``shipped`` worth running here: fp16 ONNX only on a GPU (the CPU provider emulates
    it), the bf16 PyTorch variant only where bf16 arithmetic is native, an int8 model with 8-bit
    weights only on a CPU with VNNI (without it, ONNX Runtime's u8 x s8 kernel may saturate, so the
    gate's figures would not hold here; 7-bit weights run exactly alike everywhere)."""
    usable = []
    for variant in shipped:
        if variant == "fp16" and not gpu:
            continue
        if variant == "int8" and not gpu and int8_bits == 8 and not caps.cpu_int8:
            continue
        if variant == "torch_bf16" and not (caps.cuda_bf16 if gpu else caps.cpu_bf16):
            continue
        usable.append(variant)
    return usable


def onnx_gpu() -> bool:
    """A CUDA device ONNX Runtime can use (onnxruntime-gpu lists its CUDA provider without one)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    return detect().cuda


CPU_THREADS_ENV = "IMDB_MLOPS_CPU_THREADS"  # set by `imdb-mlops serve`: each worker's share of the cores


def cpu_threads() -> int:
    """Cores this process may use (the container's share, not the host's), or the share its server
    gave it in ``$IMDB_MLOPS_CPU_THREADS``."""
    share = os.environ.get(CPU_THREADS_ENV, "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def ort_session_options(threads: int | None = None, optimization: str = "all", arena: bool = True) -> Any:
    """ONNX Runtime's CPU settings as its performance docs teach: intra-op threads = the cores this
    process has, one inter-op thread (sequential graph), every graph optimization, the CPU memory
    arena on. (Memory patterns only help fixed shapes; they are left at ORT's default.)"""
    import onnxruntime as ort

    levels = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[optimization]
    options.enable_cpu_mem_arena = arena
    return options


def onnx_runner(path: Path, variant: str, gpu: bool, options: Any = None) -> Runner:
    import onnxruntime as ort

    options = options or ort_session_options()
    if gpu:
        # No TF32: the fp32 variant passed its gate with exact fp32 math.
        providers: list[Any] = [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), options, providers=providers)

    def logits(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        return session.run(["logits"], feed)[0].astype(np.float32)

    return Runner(variant, "cuda" if gpu else "cpu", logits)


def torch_runner(model: Any, variant: str, device: str) -> Runner:
    """A PyTorch classifier as a runner: ``torch_bf16`` casts its weights to bfloat16 (measured
    faster than autocast, which casts them again on every call); ``torch_fp32`` runs it as is."""
    import torch

    if variant == "torch_bf16":
        model = model.to(torch.bfloat16)
    model = model.to(device).eval()

    def logits(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(
                input_ids=torch.from_numpy(input_ids).to(device),
                attention_mask=torch.from_numpy(attention_mask).to(device),
            ).logits
        return out.float().cpu().numpy()

    return Runner(variant, device, logits)


def load_torch_classifier(model_dir: Path) -> Any:
    """The trained checkpoint for a PyTorch variant: safetensors only, no remote code."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), trust_remote_code=False, use_safetensors=True
    ).eval()


def int8_weight_bits(onnx_dir: Path) -> int | None:
    """The int8 variant's weight bits as the export stage recorded them (``export.json``); None when
    not recorded (exported before 7-bit weights existed)."""
    try:
        return json.loads((onnx_dir / "export.json").read_text(encoding="utf-8")).get("int8_weight_bits")
    except (OSError, ValueError):
        return None


def load_runner(variant: str, onnx_dir: Path, torch_dir: Path | None, gpu: bool) -> Runner:
    if variant in ONNX_VARIANTS:
        return onnx_runner(onnx_dir / f"model.{variant}.onnx", variant, gpu)
    if variant in TORCH_VARIANTS and torch_dir is not None:
        return torch_runner(load_torch_classifier(torch_dir), variant, "cuda" if gpu else "cpu")
    raise ValueError(f"variant '{variant}' cannot be loaded (no files for it)")


def padded_batches(ids: list[list[int]], batch_size: int, pad_id: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(row indices, input_ids, attention_mask) per batch; reviews sorted by length, so each batch
    is padded only to its longest review."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(ids[i]) for i in rows)
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, i in enumerate(rows):
            input_ids[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        yield rows, input_ids, mask


def predict_logits(runner: Runner, ids: list[list[int]], batch_size: int, pad_id: int) -> np.ndarray:
    """Logits for every review, in the order given."""
    out = np.empty((len(ids), 2), dtype=np.float32)
    for rows, input_ids, mask in padded_batches(ids, batch_size, pad_id):
        out[rows] = runner.logits(input_ids, mask)
    return out


def probe_texts_per_s(runner: Runner, batch: int, tokens: int, vocab: int, repeats: int = 2) -> float:
    """Texts/s of ``runner`` on a real-shaped batch (``batch`` reviews of ``tokens`` tokens), after
    one untimed call; the best of ``repeats`` timed calls."""
    rng = np.random.default_rng(0)
    input_ids = rng.integers(1000, max(vocab, 1001), (batch, tokens), dtype=np.int64)
    mask = np.ones_like(input_ids)
    runner.logits(input_ids, mask)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        runner.logits(input_ids, mask)
        best = min(best, time.perf_counter() - began)
    return round(batch / best, 1)


def choose_fastest(runners: list[Runner], batch: int, tokens: int, vocab: int) -> tuple[Runner, dict[str, float]]:
    """The runner with the most texts/s on the probe, and every candidate's figure."""
    speeds = {runner.variant: probe_texts_per_s(runner, batch, tokens, vocab) for runner in runners}
    fastest = max(runners, key=lambda runner: speeds[runner.variant])
    return fastest, speeds


def choose_variant(
    shipped: list[str],
    requested: str,
    files: tuple[Path, Path | None],
    probe: tuple[int, int, int],
    caps: Capabilities,
    gpu: bool,
) -> tuple[Runner, dict[str, Any]]:
    """The runner a served model uses, and why: ``requested`` (a variant's name, or ``auto``; the
    ``IMDB_MLOPS_VARIANT`` environment variable overrides it) picks one by name; ``auto`` loads
    every shipped variant usable here (:func:`usable_variants`) and keeps the fastest on the probe
    (batch, tokens, vocabulary size). ``files`` = (ONNX folder, PyTorch folder or None)."""
    onnx_dir, torch_dir = files
    requested = os.environ.get("IMDB_MLOPS_VARIANT", requested) or "auto"
    available = [v for v in shipped if v in ONNX_VARIANTS or torch_dir is not None]
    if requested != "auto":
        if requested not in available:
            raise ValueError(f"variant '{requested}' is not among this model's variants ({', '.join(available)})")
        runner = load_runner(requested, onnx_dir, torch_dir, gpu)
        return runner, {"variant": requested, "device": runner.device, "rule": "by name", "texts_per_s": {}}
    candidates = usable_variants(available, caps, gpu, int8_weight_bits(onnx_dir)) or available[:1]
    runners = [load_runner(v, onnx_dir, torch_dir, gpu) for v in candidates]
    began = time.perf_counter()
    fastest, speeds = choose_fastest(runners, *probe) if len(runners) > 1 else (runners[0], {})
    choice = {
        "variant": fastest.variant,
        "device": fastest.device,
        "rule": "fastest on the probe" if speeds else "only usable variant",
        "texts_per_s": speeds,
        "probe": {"batch": probe[0], "tokens": probe[1], "seconds": round(time.perf_counter() - began, 2)},
    }
    return fastest, choice

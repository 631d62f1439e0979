"""The classifier as ONNX: export, optimization and quantization, and timing of a variant.

Variants (:func:`build_variants`):

- ``fp32``: ``torch.onnx.export`` of a copy loaded with eager attention (dynamic batch and
  sequence axes; ``input_ids``, ``attention_mask`` -> ``logits``), then ONNX Runtime's
  transformer optimizer (fused Attention, SkipLayerNormalization, ... nodes);
- ``int8``: ``onnxruntime.quantization.quantize_dynamic`` of the optimized graph, for CPU: int8
  weights (per output channel by default), activations quantized per batch at run time, with the
  nodes named by ``export.int8_keep_fp32`` (first / last encoder layer, classifier head) left fp32;
- ``fp16``: the optimized graph in half precision, only when exported on a GPU.

Whether a variant ships is decided by :mod:`imdb_mlops.modeling.variant_gate`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from imdb_mlops.config import ExportConfig
from imdb_mlops.modeling.runtimes import INPUT_NAMES, Runner, padded_batches


def build_variants(model: Any, work: Path, cfg: ExportConfig, gpu: bool) -> dict[str, Path]:
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
        input_names=list(INPUT_NAMES),
        output_names=["logits"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {"logits": {0: "batch"}},
        opset_version=cfg.opset,
        dynamo=False,
    )
    config = model.config
    heads = getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0
    optimized = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden, use_gpu=gpu)
    fp32 = work / "model.fp32.onnx"
    optimized.save_model_to_file(str(fp32))
    int8 = work / "model.int8.onnx"
    names = [node.name for node in optimized.model.graph.node]
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=cfg.int8_per_channel,
        nodes_to_exclude=fp32_nodes(names, cfg.int8_keep_fp32),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    variants = {"fp32": fp32, "int8": int8}
    if gpu:
        optimized.convert_float_to_float16(keep_io_types=True)
        fp16 = work / "model.fp16.onnx"
        optimized.save_model_to_file(str(fp16))
        variants["fp16"] = fp16
    return variants


def fp32_nodes(names: list[str], keep: list[str]) -> list[str]:
    """Nodes of the optimized graph that ``keep`` (``first_layer``, ``last_layer``, ``head``) names:
    an encoder layer's nodes carry ``layer.<i>/`` in their names, its fused attention is
    ``Attention_<i>``; the head is the pooler / pre-classifier / classifier."""
    layers = sorted({int(m.group(1)) for n in names if (m := re.search(r"layer\.(\d+)/", n))})
    wanted: list[str] = []
    for part in keep:
        if part == "head":
            wanted += [n for n in names if re.search(r"pooler|classifier", n)]
        elif layers:
            i = layers[0] if part == "first_layer" else layers[-1]
            wanted += [n for n in names if f"layer.{i}/" in n or n == f"Attention_{i}"]
    return sorted(set(wanted))


def latency(runner: Runner, ids: list[list[int]], pad_id: int) -> dict[str, float]:
    """Median latency at batch 1 and texts/s at batch 1 and 32 on ``ids`` (length-sorted batches),
    after one untimed pass (the CUDA provider picks kernels per input shape on first sight)."""
    figures: dict[str, float] = {}
    for batch_size in (1, 32):
        batches = list(padded_batches(ids, batch_size, pad_id))
        for _, input_ids, mask in batches:
            runner.logits(input_ids, mask)
        timings = []
        for _, input_ids, mask in batches:
            began = time.perf_counter()
            runner.logits(input_ids, mask)
            timings.append(time.perf_counter() - began)
        figures[f"batch{batch_size}_texts_per_s"] = round(len(ids) / sum(timings), 2)
        if batch_size == 1:
            figures["batch1_latency_ms_p50"] = round(float(np.median(timings)) * 1000, 2)
    return figures

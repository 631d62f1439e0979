"""The classifier as ONNX: export, optimization and quantization, and timing of a variant.

Variants (:func:`build_variants`):

- ``fp32``: ``torch.onnx.export`` of a copy loaded with eager attention (dynamic batch and
  sequence axes; ``input_ids``, ``attention_mask`` -> ``logits``), then ONNX Runtime's
  transformer optimizer (fused Attention, SkipLayerNormalization, ... nodes);
- ``int8``: ``onnxruntime.quantization.quantize_dynamic`` of the optimized graph, for CPU: int8
  weights (per output channel by default), activations quantized per batch at run time, with the
  nodes named by ``export.int8_keep_fp32`` (first / last encoder layer, classifier head) left fp32;
  with ``export.int8_smoothing``, the quantized MatMuls' inputs smoothed first
  (:mod:`imdb_mlops.modeling.int8_smoothing`, calibrated on training reviews);
- ``fp16``: the optimized graph in half precision, only when exported on a GPU.

Whether a variant ships is decided by :mod:`imdb_mlops.modeling.variant_gate`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import ExportConfig
from imdb_mlops.modeling.capabilities import Capabilities, detect
from imdb_mlops.modeling.runtimes import INPUT_NAMES, Runner, padded_batches


def build_variants(
    model: Any, work: Path, cfg: ExportConfig, gpu: bool, calibration: tuple[list[list[int]], int] | None = None
) -> dict[str, Path]:
    """fp32 (optimized), int8 (dynamic quantization) and, on a GPU, fp16; ``calibration`` (token ids,
    padding id) sets the smoothing of int8's inputs where ``export.int8_smoothing`` asks for it."""
    optimized, fp32 = export_fused(model, work, cfg.opset, gpu)
    int8 = work / "model.int8.onnx"
    try:
        quantized_from = fp32
        if cfg.int8_smoothing is not None:
            quantized_from = smoothed_for_int8(model, fp32, work / "model.fp32.smoothed.onnx", cfg, calibration)
        quantize_int8(quantized_from, int8, cfg.int8_keep_fp32, int8_reduce_range(cfg), cfg.int8_per_channel)
    except ValueError as exc:
        raise PipelineError(f"export.int8_keep_fp32: {exc}") from None
    variants = {"fp32": fp32, "int8": int8}
    if gpu:
        optimized.convert_float_to_float16(keep_io_types=True)
        fp16 = work / "model.fp16.onnx"
        optimized.save_model_to_file(str(fp16))
        variants["fp16"] = fp16
    return variants


def smoothed_for_int8(
    model: Any, fp32: Path, out: Path, cfg: ExportConfig, calibration: tuple[list[list[int]], int] | None
) -> Path:
    """The fused graph with the inputs of the MatMuls int8 will quantize smoothed (``out``)."""
    from imdb_mlops.modeling.int8_smoothing import activation_ranges, linear_for_node, smooth_graph

    if not calibration or not calibration[0]:
        raise PipelineError("export.int8_smoothing: no calibration reviews (the tokenized train split is empty)")
    ids, pad_id = calibration
    ranges = activation_ranges(model, ids, pad_id)
    calibrated = set(ranges)
    # the encoder's (the head has no calibrated ranges; dynamic int8 leaves its Gemm fp32)
    nodes = [name for name in quantizable_matmuls(fp32, cfg.int8_keep_fp32) if linear_for_node(name, calibrated)]
    try:
        smooth_graph(fp32, out, nodes, ranges, cfg.int8_smoothing or 0.0)
    except ValueError as exc:
        raise PipelineError(f"export.int8_smoothing: {exc}") from None
    return out


def export_fused(model: Any, work: Path, opset: int, gpu: bool) -> tuple[Any, Path]:
    """``torch.onnx.export`` of ``model`` (eager attention), then ONNX Runtime's transformer
    optimizer; (the optimized model, its fp32 file ``model.fp32.onnx``)."""
    import torch
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
        opset_version=opset,
        dynamo=False,
    )
    config = model.config
    heads = getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0
    optimized = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden, use_gpu=gpu)
    fp32 = work / "model.fp32.onnx"
    optimized.save_model_to_file(str(fp32))
    return optimized, fp32


def int8_reduce_range(cfg: ExportConfig, caps: Capabilities | None = None) -> bool:
    """7-bit int8 weights? ``export.int8_weight_bits``: 7, 8, or ``auto`` = 7 where this CPU has
    no VNNI (AVX2 only), whose u8 x s8 kernel saturates 16-bit pair sums with 8-bit weights."""
    if cfg.int8_weight_bits != "auto":
        return cfg.int8_weight_bits == 7
    return not (caps or detect()).cpu_int8


def quantize_int8(
    fp32: Path,
    out: Path,
    keep_fp32: list[str],
    reduce_range: bool,
    per_channel: bool = True,
    unsigned: bool = False,
    only: list[str] | None = None,
    exclude: list[str] | None = None,
) -> None:
    """Dynamic int8 quantization of the fused fp32 graph (weights per output channel by default,
    activations per batch at run time): 7-bit weights with ``reduce_range``, u8 weights with
    ``unsigned``; the nodes ``keep_fp32`` names and ``exclude`` stay fp32; ``only`` quantizes just
    those nodes (sensitivity analysis)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = [node.name for node in onnx.load(str(fp32), load_external_data=False).graph.node]
    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        nodes_to_quantize=only,
        nodes_to_exclude=sorted(set(fp32_nodes(names, keep_fp32)) | set(exclude or [])),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def quantizable_matmuls(fp32: Path, keep_fp32: list[str]) -> list[str]:
    """Names of the fused graph's MatMul / Attention nodes int8 would quantize (all but ``keep_fp32``)."""
    import onnx

    nodes = onnx.load(str(fp32), load_external_data=False).graph.node
    kept = set(fp32_nodes([n.name for n in nodes], keep_fp32))
    return [n.name for n in nodes if n.op_type in ("MatMul", "Attention") and n.name not in kept]


def fp32_nodes(names: list[str], keep: list[str]) -> list[str]:
    """Nodes of the optimized graph that ``keep`` names: ``first_layer``, ``last_layer`` (an encoder
    layer's nodes carry ``layer.<i>/`` in their names, its fused attention is ``Attention_<i>``),
    ``head`` (pooler / pre-classifier / classifier), ``ffn_input.<i>`` / ``ffn_output.<i>`` (layer i's
    FFN MatMuls, BERT and DistilBERT alike), or any other entry as part of node names; an entry that
    names no node is an error (:class:`ValueError`, naming it)."""
    layers = sorted({int(m.group(1)) for n in names if (m := re.search(r"layer\.(\d+)/", n))})
    wanted: list[str] = []
    for part in keep:
        if part == "head":
            wanted += [n for n in names if re.search(r"pooler|classifier", n)]
        elif part in ("first_layer", "last_layer"):
            if layers:
                i = layers[0] if part == "first_layer" else layers[-1]
                wanted += [n for n in names if f"layer.{i}/" in n or n == f"Attention_{i}"]
        else:
            ffn = re.fullmatch(r"ffn_(input|output)\.(\d+)", part)
            if ffn:  # BERT: intermediate/dense, output/dense; DistilBERT: ffn/lin1, ffn/lin2
                which = "intermediate/dense|ffn/lin1" if ffn.group(1) == "input" else "output/dense|ffn/lin2"
                pattern = re.compile(rf"layer\.{ffn.group(2)}/({which})/MatMul$")
                named = [n for n in names if pattern.search(n)]
            else:
                named = [n for n in names if part in n]
            if not named:
                raise ValueError(f"'{part}' names no node of the exported graph")
            wanted += named
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

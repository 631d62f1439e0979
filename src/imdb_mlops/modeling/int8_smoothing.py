"""Activation smoothing before int8 (SmoothQuant, Xiao et al. 2023) for the fused ONNX classifier.

Dynamic int8 quantizes a MatMul's input with one scale per batch; a few input channels with large
values (outliers, e.g. after LayerNorm or GELU) set that scale and leave the other channels few
levels. Smoothing moves the difficulty into the weights, which are quantized per output channel: for
each quantized MatMul ``y = x W``, with per-input-channel ranges ``a_j = max |x_j|`` (calibrated on
training reviews, padding excluded) and ``b_j = max |W_j.|``, the factor
``s_j = a_j ** alpha / b_j ** (1 - alpha)`` divides input channel j and multiplies weight row j, so
``y = (x / s) (s W)`` is unchanged in exact arithmetic.

In the graph the division is a ``Mul`` by ``1 / s`` in front of the MatMul (for fused ``Attention``
nodes: in front of their packed Q/K/V projection). It cannot be folded into the node before: the
LayerNorm outputs also feed the residual path, and GELU is not linear.

ONNX Runtime's own SmoothQuant (``quantize_static(extra_options={"SmoothQuant": True})``) needs
Intel Neural Compressor and static quantization of a graph ONNX shape inference understands (the
fused ``Attention`` nodes are not), so this is written here; ranges come from the PyTorch model
the graph was exported from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

SMOOTH_SUFFIX = "_smoothing"


def activation_ranges(model: Any, ids: list[list[int]], pad_id: int, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per-input-channel ``max |x|`` of every linear layer of ``model``'s encoder over the real
    (non-padding) tokens of ``ids``, keyed by module name (``bert.encoder.layer.0.output.dense``)."""
    import torch

    from imdb_mlops.modeling.runtimes import padded_batches

    ranges: dict[str, Any] = {}
    real_tokens: dict[str, Any] = {}

    def record(name: str):
        def hook(_module: Any, inputs: tuple[Any, ...]) -> None:
            x = inputs[0].detach()
            peak = x[real_tokens["mask"]].abs().amax(0) if x.dim() == 3 else x.abs().amax(0)
            ranges[name] = torch.maximum(ranges[name], peak) if name in ranges else peak

        return hook

    handles = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and re.search(r"\.layer\.\d+\.", name)
    ]
    try:
        with torch.inference_mode():
            for _, input_ids, mask in padded_batches(ids, batch_size, pad_id):
                real_tokens["mask"] = torch.from_numpy(mask).bool()
                model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask))
    finally:
        for handle in handles:
            handle.remove()
    return {name: peak.float().numpy() for name, peak in ranges.items()}


def linear_for_node(node_name: str, linear_names: set[str]) -> str | None:
    """The encoder linear layer whose input a fused-graph node multiplies: a MatMul is named after its
    module (``/bert/encoder/layer.0/output/dense/MatMul``); fused ``Attention_<i>`` packs layer i's
    query, key and value projections, which share the query's input."""
    if attention := re.fullmatch(r"Attention_(\d+)", node_name):
        layer = attention.group(1)
        for suffix in ("attention.self.query", "attention.q_lin"):  # BERT, DistilBERT
            match = [n for n in linear_names if n.endswith(f".layer.{layer}.{suffix}")]
            if len(match) == 1:
                return match[0]
        return None
    name = node_name.strip("/").removesuffix("/MatMul").replace("/", ".")
    return name if name in linear_names else None


def smooth_graph(src: Path, dst: Path, nodes: list[str], ranges: dict[str, np.ndarray], alpha: float) -> list[str]:
    """Write ``src`` with the inputs of ``nodes`` (MatMul / Attention) smoothed to ``dst``; returns the
    nodes smoothed. A node without calibrated ranges or whose weight is shared is an error."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    wanted, calibrated, nodes_out, done = set(nodes), set(ranges), [], []
    for node in graph.node:
        if node.name in wanted:
            linear = linear_for_node(node.name, calibrated)
            if linear is None or node.input[1] not in weights or uses[node.input[1]] != 1:
                raise ValueError(f"node {node.name}: no calibrated linear layer or an unshared weight to smooth")
            weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
            factor = smoothing_factors(ranges[linear].astype(np.float64), np.abs(weight).max(axis=1), alpha)
            weights[node.input[1]].CopyFrom(
                numpy_helper.from_array((weight * factor[:, None]).astype(np.float32), node.input[1])
            )
            inverse, smoothed = node.name + SMOOTH_SUFFIX + "_inverse", node.name + SMOOTH_SUFFIX + "_output"
            graph.initializer.append(numpy_helper.from_array((1.0 / factor).astype(np.float32), inverse))
            nodes_out.append(
                helper.make_node("Mul", [node.input[0], inverse], [smoothed], name=node.name + SMOOTH_SUFFIX)
            )
            node.input[0] = smoothed
            done.append(node.name)
        nodes_out.append(node)
    if missing := wanted - set(done):
        raise ValueError(f"no such node to smooth: {', '.join(sorted(missing))}")
    del graph.node[:]
    graph.node.extend(nodes_out)
    onnx.save(model, str(dst))
    return done


def smoothing_factors(activation_peak: np.ndarray, weight_peak: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = a_j ** alpha / b_j ** (1 - alpha)``; channels that never fire (or weights of zero) get
    a factor from a floor, not infinity."""
    floor = 1e-5
    return np.maximum(activation_peak, floor) ** alpha / np.maximum(weight_peak, floor) ** (1 - alpha)

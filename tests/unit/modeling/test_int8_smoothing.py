"""Smoothing int8's inputs: exact in fp32, ranges flattened, a quantized product made faithful."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from imdb_mlops.modeling.int8_smoothing import linear_for_node, smooth_graph, smoothing_factors

NODE = "/bert/encoder/layer.0/output/dense/MatMul"
LINEAR = "bert.encoder.layer.0.output.dense"


def one_matmul(path, weight: np.ndarray) -> None:
    """A graph of one MatMul named like the fused classifier's (x: [batch, tokens, in])."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", weight.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", weight.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name=NODE)
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


def run(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture
def outlier_input():
    """Activations with two outlier channels (60x the rest), as after a LayerNorm or GELU."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 64)).astype(np.float32)
    x[..., [3, 40]] *= 60
    weight = (rng.normal(size=(64, 32)) * 0.1).astype(np.float32)
    return x, weight


def test_factors_follow_the_migration_strength():
    a, b = np.array([4.0, 1.0, 0.0]), np.array([1.0, 4.0, 1.0])
    assert smoothing_factors(a, b, 0.5) == pytest.approx([2.0, 0.5, np.sqrt(1e-5)])
    assert smoothing_factors(a, b, 0.8)[0] == pytest.approx(4.0**0.8)  # b = 1: only the activation counts


def test_nodes_map_to_their_linear_layers_in_bert_and_distilbert():
    bert = {LINEAR, "bert.encoder.layer.2.attention.self.query", "bert.encoder.layer.2.attention.self.key"}
    assert linear_for_node(NODE, bert) == LINEAR
    assert linear_for_node("Attention_2", bert) == "bert.encoder.layer.2.attention.self.query"
    distil = {"distilbert.transformer.layer.1.ffn.lin2", "distilbert.transformer.layer.1.attention.q_lin"}
    assert linear_for_node("/distilbert/transformer/layer.1/ffn/lin2/MatMul", distil) in distil
    assert linear_for_node("Attention_1", distil) == "distilbert.transformer.layer.1.attention.q_lin"
    assert linear_for_node("/classifier/MatMul", bert) is None


def test_smoothing_is_exact_in_fp32_and_moves_the_outliers_into_the_weights(tmp_path, outlier_input):
    x, weight = outlier_input
    one_matmul(tmp_path / "plain.onnx", weight)
    ranges = {LINEAR: np.abs(x).reshape(-1, 64).max(0)}
    assert smooth_graph(tmp_path / "plain.onnx", tmp_path / "smooth.onnx", [NODE], ranges, 0.8) == [NODE]
    np.testing.assert_allclose(run(tmp_path / "smooth.onnx", x), run(tmp_path / "plain.onnx", x), atol=1e-4)
    graph = onnx.load(str(tmp_path / "smooth.onnx")).graph
    assert [n.op_type for n in graph.node] == ["Mul", "MatMul"]
    inverse = numpy_helper.to_array(next(i for i in graph.initializer if i.name.endswith("_inverse")))
    smoothed = ranges[LINEAR] * inverse
    # the outlier channels no longer set the range: the widest is within 4x of the median (60x before)
    assert smoothed.max() / np.median(smoothed) < 4 < ranges[LINEAR].max() / np.median(ranges[LINEAR])


def test_a_smoothed_product_quantizes_far_more_faithfully(tmp_path, outlier_input):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    x, weight = outlier_input
    one_matmul(tmp_path / "plain.onnx", weight)
    smooth_graph(
        tmp_path / "plain.onnx", tmp_path / "smooth.onnx", [NODE], {LINEAR: np.abs(x).reshape(-1, 64).max(0)}, 0.8
    )
    exact = run(tmp_path / "plain.onnx", x)
    errors = {}
    for name in ("plain", "smooth"):
        quantize_dynamic(
            str(tmp_path / f"{name}.onnx"), str(tmp_path / f"{name}.int8.onnx"), weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True,
        )  # fmt: skip
        errors[name] = np.abs(run(tmp_path / f"{name}.int8.onnx", x) - exact).mean() / np.abs(exact).mean()
    assert errors["smooth"] < errors["plain"] / 2  # 0.015 against 0.038


def test_a_node_that_cannot_be_smoothed_is_named(tmp_path, outlier_input):
    one_matmul(tmp_path / "plain.onnx", outlier_input[1])
    with pytest.raises(ValueError, match=f"node {NODE}: no calibrated linear layer"):
        smooth_graph(tmp_path / "plain.onnx", tmp_path / "s.onnx", [NODE], {}, 0.8)
    with pytest.raises(ValueError, match="no such node to smooth: Attention_9"):
        smooth_graph(tmp_path / "plain.onnx", tmp_path / "s.onnx", ["Attention_9"], {LINEAR: np.ones(64)}, 0.8)

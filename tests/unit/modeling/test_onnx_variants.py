"""Which nodes of the optimized graph int8 quantization leaves in fp32."""

from imdb_mlops.modeling.onnx_variants import fp32_nodes

NAMES = [
    "EmbedLayerNormalization_0",
    "Attention_0",
    "/bert/encoder/layer.0/intermediate/dense/MatMul",
    "Attention_1",
    "/bert/encoder/layer.1/output/dense/MatMul",
    "/bert/pooler/dense/Gemm",
    "/classifier/Gemm",
]


def test_keep_names_the_first_and_last_layer_and_the_head():
    assert fp32_nodes(NAMES, ["first_layer"]) == ["/bert/encoder/layer.0/intermediate/dense/MatMul", "Attention_0"]
    assert fp32_nodes(NAMES, ["last_layer"]) == ["/bert/encoder/layer.1/output/dense/MatMul", "Attention_1"]
    assert fp32_nodes(NAMES, ["head"]) == ["/bert/pooler/dense/Gemm", "/classifier/Gemm"]
    assert fp32_nodes(NAMES, []) == []


def test_keep_names_ffn_matmuls_of_bert_and_distilbert_alike():
    distil = ["/distilbert/transformer/layer.0/ffn/lin1/MatMul", "/distilbert/transformer/layer.0/ffn/lin2/MatMul"]
    assert fp32_nodes(NAMES, ["ffn_input.0"]) == ["/bert/encoder/layer.0/intermediate/dense/MatMul"]
    assert fp32_nodes(NAMES, ["ffn_output.1", "head"]) == [
        "/bert/encoder/layer.1/output/dense/MatMul", "/bert/pooler/dense/Gemm", "/classifier/Gemm"
    ]  # fmt: skip
    assert fp32_nodes(distil, ["ffn_output.0"]) == [distil[1]]
    assert fp32_nodes(NAMES, ["Attention_1"]) == ["Attention_1"]  # part of a node's name


def test_a_keep_entry_that_names_no_node_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="'ffn_output.9' names no node"):
        fp32_nodes(NAMES, ["ffn_output.9"])

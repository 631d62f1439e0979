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

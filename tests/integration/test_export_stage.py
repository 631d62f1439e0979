"""The export stage on a tiny DistilBERT: variants, real ONNX Runtime sessions, the gate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from helpers import save_tiny_distilbert, write_hub_layout
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import ExportConfig, validate_params
from imdb_mlops.modeling.capabilities import detect
from imdb_mlops.modeling.classifier import load_trained_classifier
from imdb_mlops.modeling.onnx_variants import build_variants
from imdb_mlops.modeling.runtimes import onnx_runner, predict_logits, torch_runner
from imdb_mlops.stages.export import export, judge
from imdb_mlops.stages.ingest import ingest
from imdb_mlops.stages.tokenize import tokenize

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="export")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_path):
    """A tiny classifier checkpoint, tokenized validation reviews, and its ONNX variants."""
    tmp = tmp_path_factory.mktemp("export")
    model_dir = save_tiny_distilbert(tmp / "classifier", minilm_path, classifier_labels=2)
    params = validate_params(
        {
            "data": {"source": str(write_hub_layout(tmp / "imdb", 200, 80))},
            "model": {"name": str(model_dir)},
            "tokenize": {"max_length": 64},
        }
    )
    ingest(params, tmp / "raw", tmp / "data.json")
    tokenize(params, tmp / "raw", tmp / "tokenized", tmp / "tokenize.json")
    model, tokenizer = load_trained_classifier(model_dir, attn_implementation="eager")
    (tmp / "variants").mkdir()
    variants = build_variants(model, tmp / "variants", ExportConfig(), gpu=False)
    return {
        "tmp": tmp,
        "model_dir": model_dir,
        "params": params,
        "model": model,
        "tokenizer": tokenizer,
        "variants": variants,
    }


def test_stage_ships_passing_variants_with_a_report(exported):
    tmp = exported["tmp"]
    report = export(exported["params"], exported["model_dir"], tmp / "tokenized", tmp / "onnx", tmp / "onnx.json")
    assert report["provider"] == "CPUExecutionProvider"
    assert "fp32" in report["shipped"]
    fp32 = report["variants"]["fp32"]
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["agreement"] == 1.0
    assert fp32["batch1_latency_ms_p50"] > 0 and fp32["batch32_texts_per_s"] > 0
    shipped = sorted(p.name for p in (tmp / "onnx").glob("*.onnx"))
    assert shipped == sorted(f"model.{v}.onnx" for v in report["shipped"] if v != "torch_bf16")
    assert json.loads((tmp / "onnx" / "export.json").read_text())["shipped"] == report["shipped"]
    assert (tmp / "onnx" / "tokenizer.json").is_file()
    written = json.loads((tmp / "onnx.json").read_text())
    assert (
        written["variants"]["fp32"]["shipped"] is True and written["gate_samples"] == 20
    )  # the whole validation split
    assert written["capabilities"]["cpu.flags"]
    # The bf16 PyTorch variant is a candidate exactly where bf16 is native.
    assert ("torch_bf16" in report["variants"]) == detect().cpu_bf16
    for name, variant in report["variants"].items():
        if name != "fp32":
            assert variant["n"] == 20 and variant["lower_bound"] <= variant["accuracy_change"]
            assert variant["shipped"] == (variant["lower_bound"] > -0.005 and variant["probability_diff_p99"] <= 0.1)


def test_fp32_graph_is_fused_and_int8_is_quantized(exported):
    ops = {name: {n.op_type for n in onnx.load(str(path)).graph.node} for name, path in exported["variants"].items()}
    assert {"Attention", "SkipLayerNormalization"} <= ops["fp32"]
    assert ops["int8"] & {"MatMulInteger", "DynamicQuantizeLinear", "QAttention"}


def test_int8_can_keep_the_first_layer_in_fp32(exported, tmp_path):
    """export.int8_keep_fp32 = [first_layer, head]: layer 0's products stay float MatMul / Attention."""
    cfg = ExportConfig(int8_keep_fp32=["first_layer", "head"])
    graph = onnx.load(str(build_variants(exported["model"], tmp_path, cfg, gpu=False)["int8"])).graph
    first = {n.op_type for n in graph.node if "layer.0/" in n.name or n.name == "Attention_0"}
    assert "MatMul" in first and "Attention" in first and not first & {"MatMulInteger", "QAttention"}
    later = {n.op_type for n in graph.node if "layer.1/" in n.name}
    assert "MatMulInteger" in later


def test_a_corrupted_weight_fails_the_parity_gate(exported, tmp_path):
    model = onnx.load(str(exported["variants"]["fp32"]))
    target = next(t for t in model.graph.initializer if list(t.dims) == [2])  # the classifier's bias
    weights = numpy_helper.to_array(target).copy()
    weights.flat[0] += 1.0  # one weight off by one: every logit of class 0 moves by exactly 1
    target.CopyFrom(numpy_helper.from_array(weights, target.name))
    corrupt = tmp_path / "corrupt.onnx"
    onnx.save(model, str(corrupt))
    tmp = exported["tmp"]
    from datasets import load_from_disk

    validation = load_from_disk(str(tmp / "tokenized"))["validation"]
    ids, labels = validation["input_ids"], np.asarray(validation["label"])
    pad = exported["tokenizer"].pad_token_id
    reference = predict_logits(torch_runner(exported["model"], "torch_fp32", "cpu"), ids, 32, pad)
    logits = predict_logits(onnx_runner(corrupt, "fp32", gpu=False), ids, 32, pad)
    entry = judge("fp32", reference, logits, labels, ExportConfig())
    assert entry["max_abs_diff"] == pytest.approx(1.0, abs=1e-3)
    assert entry["failed"] and entry["failed"][0].startswith("max |logit diff| 1.00e+00 > 1e-04")
    assert entry["shipped"] is False


def test_a_failing_variant_is_not_shipped_and_the_report_says_why(exported, tmp_path):
    tree = exported["params"].model_dump()
    tree["export"]["fp32_max_abs_diff"] = 1e-30  # no real export is this exact
    tmp = exported["tmp"]
    report = export(
        validate_params(tree), exported["model_dir"], tmp / "tokenized", tmp_path / "onnx", tmp_path / "onnx.json"
    )
    fp32 = report["variants"]["fp32"]
    assert fp32["shipped"] is False and fp32["failed"][0].startswith("max |logit diff|")
    assert "fp32" not in report["shipped"]
    assert not (tmp_path / "onnx" / "model.fp32.onnx").exists()
    assert (tmp_path / "onnx" / "model.int8.onnx").exists() == ("int8" in report["shipped"])


def test_missing_model_is_a_clear_error(exported, tmp_path):
    with pytest.raises(PipelineError, match="no trained model"):
        export(
            exported["params"],
            tmp_path / "nothing",
            exported["tmp"] / "tokenized",
            tmp_path / "onnx",
            tmp_path / "r.json",
        )


def test_seven_bit_int8_cannot_saturate_keeps_the_ffn_outputs_in_fp32_and_passes_the_gate(exported, tmp_path):
    """export.int8_weight_bits 7 (what an AVX2-only CPU gets): every int8 weight lies in [-64, 64], so
    no pair of u8 x s8 products can overflow a 16-bit sum (2 x 255 x 64 < 32767), and the results
    are the same on every CPU; the FFN output MatMuls of layers 0 and 1 stay float. On 2,000 reviews of
    random tokens it passes the gate against PyTorch fp32."""
    from imdb_mlops.modeling.variant_gate import GateRule, gate_failures, gate_figures, positive_probabilities

    cfg = ExportConfig(int8_weight_bits=7)
    assert cfg.int8_keep_fp32 == ["head", "ffn_output.0", "ffn_output.1"]
    path = build_variants(exported["model"], tmp_path, cfg, gpu=False)["int8"]
    graph = onnx.load(str(path)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and all(w.min() >= -64 and w.max() <= 64 for w in weights)
    kept = [n for n in graph.node if "/ffn/lin2/MatMul" in n.name]
    assert {n.op_type for n in kept} == {"MatMul"} and len(kept) == 2  # both layers of the tiny model
    assert "MatMulInteger" in {n.op_type for n in graph.node}

    rng = np.random.default_rng(0)
    ids = [list(rng.integers(1000, 20000, size=int(rng.integers(8, 64)))) for _ in range(2000)]
    pad = exported["tokenizer"].pad_token_id
    reference = positive_probabilities(
        predict_logits(torch_runner(exported["model"], "torch_fp32", "cpu"), ids, 32, pad)
    )
    int8 = positive_probabilities(predict_logits(onnx_runner(path, "int8", gpu=False), ids, 32, pad))
    # an untrained model sits near 0.5, so random labels: a flip is as likely a gain as a loss
    figures = gate_figures(reference, int8, rng.integers(0, 2, size=len(ids)), GateRule())
    assert not gate_failures(figures, GateRule()), figures


def test_a_keep_entry_that_names_no_node_is_refused(exported, tmp_path):
    cfg = ExportConfig(int8_keep_fp32=["head", "ffn_output.7"])
    with pytest.raises(PipelineError, match=r"export.int8_keep_fp32: 'ffn_output.7' names no node"):
        build_variants(exported["model"], tmp_path, cfg, gpu=False)


def test_smoothed_int8_is_calibrated_on_training_reviews_and_passes_the_gate(exported, tmp_path):
    """export.int8_smoothing (the quick profile's recipe): every int8 product but the kept FFN output
    reads its input through a smoothing Mul, the report says on how many training reviews the ranges
    were taken, and the calibrated int8 model ships by the unchanged gate."""
    tree = exported["params"].model_dump()
    tree["export"].update(int8_smoothing=0.8, int8_calibration_samples=50, int8_keep_fp32=["head", "ffn_output.0"])
    tree["export"]["int8_weight_bits"] = 7
    tmp = exported["tmp"]
    report = export(
        validate_params(tree), exported["model_dir"], tmp / "tokenized", tmp_path / "onnx", tmp_path / "r.json"
    )
    assert report["int8_smoothing"] == 0.8 and report["int8_calibration_reviews"] == 50
    assert "int8" in report["shipped"], report["variants"]["int8"]
    graph = onnx.load(str(tmp_path / "onnx" / "model.int8.onnx")).graph
    smoothed = {
        n.name.removesuffix("_smoothing") for n in graph.node if n.op_type == "Mul" and n.name.endswith("_smoothing")
    }
    assert smoothed == {  # both layers' attention and FFN products, less the one kept in fp32
        "Attention_0", "Attention_1", "/distilbert/transformer/layer.0/attention/out_lin/MatMul",
        "/distilbert/transformer/layer.1/attention/out_lin/MatMul", "/distilbert/transformer/layer.0/ffn/lin1/MatMul",
        "/distilbert/transformer/layer.1/ffn/lin1/MatMul", "/distilbert/transformer/layer.1/ffn/lin2/MatMul",
    }  # fmt: skip


def test_smoothing_without_training_reviews_is_refused(exported, tmp_path):
    with pytest.raises(PipelineError, match="export.int8_smoothing: no calibration reviews"):
        build_variants(exported["model"], tmp_path, ExportConfig(int8_smoothing=0.5), gpu=False)

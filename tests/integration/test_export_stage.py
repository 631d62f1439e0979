"""ONNX export on a tiny DistilBERT: variants, real ONNX Runtime sessions, the parity gate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from helpers import save_tiny_distilbert, write_hub_layout
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import ExportConfig, validate_params
from imdb_mlops.modeling.classifier import load_trained_classifier
from imdb_mlops.modeling.onnx_variants import build_variants, make_session, onnx_logits, parity_failures, parity_figures
from imdb_mlops.stages.export import export
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
    variants = build_variants(model, tmp / "variants", opset=17, gpu=False)
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
    assert shipped == sorted(f"model.{v}.onnx" for v in report["shipped"])
    assert (tmp / "onnx" / "tokenizer.json").is_file()
    assert json.loads((tmp / "onnx.json").read_text())["variants"]["fp32"]["shipped"] is True


def test_fp32_graph_is_fused_and_int8_is_quantized(exported):
    ops = {name: {n.op_type for n in onnx.load(str(path)).graph.node} for name, path in exported["variants"].items()}
    assert {"Attention", "SkipLayerNormalization"} <= ops["fp32"]
    assert ops["int8"] & {"MatMulInteger", "DynamicQuantizeLinear", "QAttention"}


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
    from imdb_mlops.modeling.onnx_variants import torch_logits

    reference = torch_logits(exported["model"], exported["tokenizer"], ids)
    parity = parity_figures(
        reference, onnx_logits(make_session(corrupt, "CPUExecutionProvider"), exported["tokenizer"], ids), labels
    )
    failures = parity_failures("fp32", parity, ExportConfig())
    assert parity["max_abs_diff"] == pytest.approx(1.0, abs=1e-3)
    assert failures and failures[0].startswith("max |logit diff| 1.00e+00 > 1e-04")


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

"""The classifier's variants as runners, and the served model's choice among those present."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import save_tiny_distilbert
from imdb_mlops.config import ExportConfig
from imdb_mlops.modeling.capabilities import Capabilities
from imdb_mlops.modeling.runtimes import (
    choose_variant,
    load_torch_classifier,
    padded_batches,
    predict_logits,
    torch_runner,
    usable_variants,
)

AVX2 = Capabilities("AMD EPYC", frozenset({"avx2"}), cuda=False, cuda_bf16=False)
AMX = Capabilities(
    "Intel Xeon", frozenset({"avx2", "avx512_bf16", "amx_bf16", "amx_int8"}), cuda=False, cuda_bf16=False
)
PROBE = (2, 16, 1000)


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_path):
    """(ONNX folder with fp32 and int8, PyTorch folder) of a tiny classifier."""
    from imdb_mlops.modeling.classifier import load_trained_classifier
    from imdb_mlops.modeling.onnx_variants import build_variants

    tmp = tmp_path_factory.mktemp("runtimes")
    model_dir = save_tiny_distilbert(tmp / "classifier", minilm_path, classifier_labels=2)
    model, _ = load_trained_classifier(model_dir, attn_implementation="eager")
    (tmp / "onnx").mkdir()
    build_variants(model, tmp / "onnx", ExportConfig(), gpu=False)
    return tmp / "onnx", model_dir


def test_only_variants_this_machine_runs_well_are_candidates():
    shipped = ["fp32", "int8", "torch_bf16", "fp16"]
    assert usable_variants(shipped, AVX2, gpu=False) == ["fp32", "int8"]
    assert usable_variants(shipped, AMX, gpu=False) == ["fp32", "int8", "torch_bf16"]
    gpu = Capabilities("x", frozenset(), cuda=True, cuda_bf16=True)
    assert usable_variants(shipped, gpu, gpu=True) == shipped
    # int8 with 8-bit weights saturates without VNNI: not a candidate there; 7-bit weights are
    assert usable_variants(shipped, AVX2, gpu=False, int8_bits=8) == ["fp32"]
    assert usable_variants(shipped, AVX2, gpu=False, int8_bits=7) == ["fp32", "int8"]
    assert usable_variants(shipped, AMX, gpu=False, int8_bits=8) == ["fp32", "int8", "torch_bf16"]


def test_batches_are_length_sorted_and_predictions_come_back_in_order(files):
    ids = [[101, 7, 8, 9, 102], [101, 5, 102], [101, 6, 6, 102]]
    batches = list(padded_batches(ids, 2, pad_id=0))
    assert [list(rows) for rows, _, _ in batches] == [[1, 2], [0]]
    assert batches[0][1].tolist() == [[101, 5, 102, 0], [101, 6, 6, 102]] and batches[0][2][0].tolist() == [1, 1, 1, 0]
    runner = torch_runner(load_torch_classifier(files[1]), "torch_fp32", "cpu")
    one_by_one = np.concatenate([predict_logits(runner, [x], 1, 0) for x in ids])
    np.testing.assert_allclose(predict_logits(runner, ids, 2, 0), one_by_one, atol=1e-5)


def test_the_only_shipped_variant_is_served_without_a_probe(files):
    runner, choice = choose_variant(["fp32"], "auto", (files[0], None), PROBE, AVX2, gpu=False)
    assert runner.variant == "fp32" and choice["rule"] == "only usable variant" and choice["texts_per_s"] == {}


def test_auto_measures_the_usable_variants_and_keeps_the_fastest(files):
    shipped = ["fp32", "int8", "torch_bf16"]
    runner, choice = choose_variant(shipped, "auto", files, PROBE, AVX2, gpu=False)
    assert set(choice["texts_per_s"]) == {"fp32", "int8"}  # no native bf16: torch_bf16 not tried
    assert runner.variant == max(choice["texts_per_s"], key=choice["texts_per_s"].get)
    _, choice = choose_variant(shipped, "auto", files, PROBE, AMX, gpu=False)
    assert set(choice["texts_per_s"]) == {"fp32", "int8", "torch_bf16"}
    # Without the PyTorch checkpoint among the model's files, the PyTorch variant cannot be a candidate.
    _, choice = choose_variant(shipped, "auto", (files[0], None), PROBE, AMX, gpu=False)
    assert set(choice["texts_per_s"]) == {"fp32", "int8"}


def test_a_variant_by_name_or_environment(files, monkeypatch):
    runner, choice = choose_variant(["fp32", "int8"], "int8", files, PROBE, AVX2, gpu=False)
    assert runner.variant == "int8" and choice["rule"] == "by name"
    monkeypatch.setenv("IMDB_MLOPS_VARIANT", "fp32")
    runner, _ = choose_variant(["fp32", "int8"], "auto", files, PROBE, AVX2, gpu=False)
    assert runner.variant == "fp32"
    with pytest.raises(ValueError, match=r"variant 'fp32' is not among this model's variants \(int8\)"):
        choose_variant(["int8"], "auto", files, PROBE, AVX2, gpu=False)

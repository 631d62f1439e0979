"""`imdb-mlops explain` on a tiny classifier: prediction, [CLS]'s attended tokens, heatmap PNGs,
the registry path, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import TokenizeConfig
from imdb_mlops.modeling.explain import explain

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REVIEW = "A slow start, but the ending was wonderful and moving."


def test_explain_lists_cls_attention_and_writes_valid_pngs(tiny_distilbert_classifier, tmp_path):
    import matplotlib.image

    report = explain(tiny_distilbert_classifier, REVIEW, TokenizeConfig(max_length=64), tmp_path / "heat", top=5)
    assert report["label"] in ("negative", "positive") and 0.5 <= report["probability"] <= 1
    assert report["layer"] == 1 and report["layers"] == 2 and report["heads"] == 2
    assert len(report["cls_top"]) == 5
    weights = [row["weight"] for row in report["cls_top"]]
    assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1.0001
    assert report["truncation"] is None and report["tokens_read"] == report["n_tokens"]
    files = sorted(Path(f).name for f in report["figures"])
    assert files == ["layer0.png", "layer1.png"]
    for name in files:
        data = (tmp_path / "heat" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        image = matplotlib.image.imread(tmp_path / "heat" / name)
        assert image.ndim == 3 and image.shape[0] > 100 and np.ptp(image) > 0  # a picture, not a blank


def test_one_head_or_every_head(tiny_distilbert_classifier, tmp_path):
    mean = explain(tiny_distilbert_classifier, REVIEW, TokenizeConfig(max_length=64), None, layer=0)
    head0 = explain(tiny_distilbert_classifier, REVIEW, TokenizeConfig(max_length=64), None, layer=0, head=0)
    every = explain(
        tiny_distilbert_classifier, REVIEW, TokenizeConfig(max_length=64), tmp_path, layer=0, per_head=True, top=100
    )
    assert set(every["cls_top_per_head"]) == {0, 1}
    assert head0["cls_top"] == every["cls_top_per_head"][0][:10]
    by_position = {h: {r["position"]: r["weight"] for r in rows} for h, rows in every["cls_top_per_head"].items()}
    for row in mean["cls_top"]:  # the mean of the heads is the mean of the heads
        assert row["weight"] == pytest.approx(
            (by_position[0][row["position"]] + by_position[1][row["position"]]) / 2, abs=2e-5
        )
    assert {"layer0_head0.png", "layer1_head1.png"} <= {p.name for p in tmp_path.iterdir()}


def test_long_review_says_what_was_cut(tiny_distilbert_classifier):
    long_review = "The opening was promising. " + "Then nothing happened at all. " * 40 + "A dreadful ending."
    report = explain(tiny_distilbert_classifier, long_review, TokenizeConfig(max_length=64, head_share=0.25), None)
    assert report["tokens_read"] == 64 and report["n_tokens"] > 64
    assert (
        "the model reads 64: the first 16 and the last 46 (tokenize.truncation head_tail); tokens 17-"
        in report["truncation"]
    )


def test_bad_input_is_named(tiny_distilbert_classifier, tmp_path):
    config = TokenizeConfig(max_length=64)
    with pytest.raises(PipelineError, match="text: the review is empty"):
        explain(tiny_distilbert_classifier, "   ", config, None)
    with pytest.raises(PipelineError, match=r"--layer: layer 5 is out of range \(the model has 2: 0-1"):
        explain(tiny_distilbert_classifier, REVIEW, config, None, layer=5)
    with pytest.raises(PipelineError, match=r"--head: head -3 is out of range \(the model has 2"):
        explain(tiny_distilbert_classifier, REVIEW, config, None, head=-3)
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    (onnx_dir / "model.fp32.onnx").write_bytes(b"not really")
    with pytest.raises(PipelineError, match="is an ONNX export .* gives no attention outputs"):
        explain(onnx_dir, REVIEW, config, None)


def test_gpt2_checkpoint_is_refused_as_a_classifier(tiny_gpt2):
    with pytest.raises(
        PipelineError, match="is a gpt2 checkpoint; explain reads the \\[CLS\\] attention of distilbert and bert"
    ):
        explain(tiny_gpt2, REVIEW, TokenizeConfig(max_length=64), None)


def test_base_encoder_without_a_trained_head_is_refused(tiny_distilbert):
    with pytest.raises(PipelineError, match=r"is not a trained classifier \(architectures: DistilBertModel\)"):
        explain(tiny_distilbert, REVIEW, TokenizeConfig(max_length=64), None)

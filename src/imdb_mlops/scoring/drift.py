"""Drift of new reviews against the training data: review length (words, PSI over the training
data's deciles), unknown-token rate (the model's own tokenizer) and the predicted-label
distribution (PSI against the training labels), each with a warning past its threshold.

The new reviews' side comes from streamed aggregates (:func:`text_aggregates` per scored piece,
summed by :func:`merge_aggregates`): counts of each review length, of positive predictions and of
unknown tokens. They give exactly the figures of the whole batch held in memory (the median from
the length counts), whatever its size."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from imdb_mlops.config import ScoringConfig

EPSILON = 1e-4  # floor for empty bins in the PSI


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares)."""
    ref = np.clip(reference, EPSILON, None)
    cur = np.clip(current, EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def length_shares(words: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, words, side="right"), minlength=len(edges) + 1)
    return counts / max(len(words), 1)


def unknown_counts(tokenizer: Any, texts: list[str]) -> tuple[int, int]:
    """Unknown tokens and all tokens of ``texts`` under ``tokenizer`` (a ``tokenizers`` object)."""
    unk_token = json.loads(tokenizer.to_str()).get("model", {}).get("unk_token", "[UNK]")
    unk_id = tokenizer.token_to_id(unk_token)
    if unk_id is None or not texts:
        return 0, 0
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return sum(e.ids.count(unk_id) for e in encodings), sum(len(e.ids) for e in encodings)


def text_aggregates(texts: list[str], labels: Iterable[str], tokenizer: Any) -> dict[str, Any]:
    """What the drift report needs of a piece of scored reviews (JSON-ready, summable)."""
    unknown, tokens = unknown_counts(tokenizer, texts)
    lengths = Counter(len(text.split()) for text in texts)
    return {
        "rows": len(texts),
        "positive": sum(label == "positive" for label in labels),
        "length_counts": {str(length): count for length, count in sorted(lengths.items())},
        "unknown_tokens": unknown,
        "tokens": tokens,
    }


def merge_aggregates(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"rows": 0, "positive": 0, "length_counts": Counter(), "unknown_tokens": 0, "tokens": 0}
    for part in parts:
        for key in ("rows", "positive", "unknown_tokens", "tokens"):
            total[key] += part[key]
        total["length_counts"].update({int(k): v for k, v in part["length_counts"].items()})
    return total


def _counted_median(counts: Counter) -> float:
    values = np.array(sorted(counts))
    cumulative = np.cumsum([counts[v] for v in values])
    n = int(cumulative[-1])
    middle = [values[np.searchsorted(cumulative, k, side="right")] for k in {(n - 1) // 2, n // 2}]
    return float(np.mean(middle))


def drift_report(
    reference: pd.DataFrame, reference_unknown: tuple[int, int], current: dict[str, Any], cfg: ScoringConfig
) -> dict[str, Any]:
    """The drift checks of the scored reviews (``current``: :func:`merge_aggregates` of their
    pieces) against the ``reference`` training reviews (``text``, ``label``) and their
    :func:`unknown_counts` under the model's tokenizer (``reference_unknown``)."""
    ref_words = reference["text"].str.split().str.len().to_numpy()
    edges = np.unique(np.quantile(ref_words, np.linspace(0, 1, cfg.length_bins + 1)[1:-1]))
    counts = current["length_counts"]
    lengths = np.array(sorted(counts))
    bins = np.searchsorted(edges, lengths, side="right")
    new_shares = np.bincount(bins, weights=[counts[v] for v in lengths], minlength=len(edges) + 1)
    length_psi = psi(length_shares(ref_words, edges), new_shares / current["rows"])
    ref_unknown, ref_tokens = reference_unknown
    ref_unk = ref_unknown / max(ref_tokens, 1)
    new_unk = current["unknown_tokens"] / max(current["tokens"], 1)
    ref_pos = float(reference["label"].mean())
    new_pos = current["positive"] / current["rows"]
    label_psi = psi(np.array([1 - ref_pos, ref_pos]), np.array([1 - new_pos, new_pos]))
    report = {
        "length_words": {
            "reference_median": float(np.median(ref_words)),
            "median": _counted_median(counts),
            "psi": round(length_psi, 4),
        },
        "unknown_token_rate": {"reference": round(ref_unk, 5), "current": round(new_unk, 5)},
        "predicted_labels": {
            "reference_positive_share": round(ref_pos, 4),
            "positive_share": round(new_pos, 4),
            "psi": round(label_psi, 4),
        },
    }
    if length_psi > cfg.psi_warning:
        report["length_words"]["warning"] = (
            f"PSI {length_psi:.3f} > {cfg.psi_warning} (review lengths differ from training)"
        )
    if new_unk - ref_unk > cfg.unknown_token_increase:
        report["unknown_token_rate"]["warning"] = (
            f"{new_unk:.2%} unknown tokens vs {ref_unk:.2%} in training (> +{cfg.unknown_token_increase:.0%})"
        )
    if label_psi > cfg.psi_warning:
        report["predicted_labels"]["warning"] = (
            f"PSI {label_psi:.3f} > {cfg.psi_warning} ({new_pos:.1%} predicted positive vs {ref_pos:.1%} in training)"
        )
    return report

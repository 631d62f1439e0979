"""Drift of new reviews against the training data: review length (words, PSI over the training
data's deciles), unknown-token rate (the model's own tokenizer) and the predicted-label
distribution (PSI against the training labels), each with a warning past its threshold."""

from __future__ import annotations

import json
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


def unknown_rate(tokenizer: Any, texts: list[str]) -> float:
    unk_token = json.loads(tokenizer.to_str()).get("model", {}).get("unk_token", "[UNK]")
    unk_id = tokenizer.token_to_id(unk_token)
    if unk_id is None:
        return 0.0
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    total = sum(len(e.ids) for e in encodings)
    return sum(e.ids.count(unk_id) for e in encodings) / max(total, 1)


def drift_report(reference: pd.DataFrame, scored: pd.DataFrame, tokenizer: Any, cfg: ScoringConfig) -> dict[str, Any]:
    ref_words = reference["text"].str.split().str.len().to_numpy()
    new_words = scored["text"].str.split().str.len().to_numpy()
    edges = np.unique(np.quantile(ref_words, np.linspace(0, 1, cfg.length_bins + 1)[1:-1]))
    length_psi = psi(length_shares(ref_words, edges), length_shares(new_words, edges))
    ref_unk, new_unk = (
        unknown_rate(tokenizer, reference["text"].tolist()),
        unknown_rate(tokenizer, scored["text"].tolist()),
    )
    ref_pos = float(reference["label"].mean())
    new_pos = float((scored["label"] == "positive").mean())
    label_psi = psi(np.array([1 - ref_pos, ref_pos]), np.array([1 - new_pos, new_pos]))
    report = {
        "length_words": {
            "reference_median": float(np.median(ref_words)),
            "median": float(np.median(new_words)),
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

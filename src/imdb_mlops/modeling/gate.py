"""The statistics of the promotion gate: is a challenger better than the champion on the same
reviews, by a margin, and not by chance (McNemar's exact test on the paired predictions)?"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

from imdb_mlops.config import RegistryConfig


def mcnemar_p_value(only_new: int, only_old: int) -> float:
    """Two-sided exact McNemar test: the discordant pairs against a fair coin."""
    discordant = only_new + only_old
    if discordant == 0:
        return 1.0
    return float(binomtest(min(only_new, only_old), discordant, 0.5).pvalue)


def gate_decision(
    labels: np.ndarray, challenger: np.ndarray, champion: np.ndarray, cfg: RegistryConfig
) -> dict[str, Any]:
    """Accuracy gain and McNemar's exact test on paired predictions; ``passes`` when both hold."""
    labels, challenger, champion = map(np.asarray, (labels, challenger, champion))
    right_new, right_old = challenger == labels, champion == labels
    only_new = int(np.sum(right_new & ~right_old))  # challenger right, champion wrong
    only_old = int(np.sum(~right_new & right_old))
    gain = float(right_new.mean() - right_old.mean())
    p_value = mcnemar_p_value(only_new, only_old)
    passes = gain >= cfg.min_improvement and p_value < cfg.mcnemar_alpha and only_new > only_old
    if passes:
        reason = f"accuracy +{gain * 100:.2f} points (>= {cfg.min_improvement * 100:.2f}), McNemar p={p_value:.3g}"
    elif gain < cfg.min_improvement:
        reason = f"accuracy gain {gain * 100:+.2f} points < required {cfg.min_improvement * 100:.2f}"
    else:
        reason = f"McNemar p={p_value:.3g} >= {cfg.mcnemar_alpha} (gain {gain * 100:+.2f} points not significant)"
    return {
        "n": len(labels),
        "challenger_accuracy": round(float(right_new.mean()), 5),
        "champion_accuracy": round(float(right_old.mean()), 5),
        "accuracy_gain": round(gain, 5),
        "only_challenger_right": only_new,
        "only_champion_right": only_old,
        "mcnemar_p_value": p_value,
        "passes": bool(passes),
        "reason": reason,
    }

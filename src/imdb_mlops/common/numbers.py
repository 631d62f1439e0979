"""Numbers out of mixed report dictionaries (for MLflow metrics, which take floats only), and the
softmax of a batch of logits."""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of 2-D logits, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def numeric_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of ``values`` (no booleans, no None, no nested values) as MLflow metrics,
    keys prefixed with ``prefix``."""
    return {
        f"{prefix}{key}": float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }

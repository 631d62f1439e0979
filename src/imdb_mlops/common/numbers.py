"""Numbers out of mixed report dictionaries (for MLflow metrics, which take floats only)."""

from __future__ import annotations

from typing import Any


def numeric_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of ``values`` (no booleans, no None, no nested values) as MLflow metrics,
    keys prefixed with ``prefix``."""
    return {
        f"{prefix}{key}": float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }

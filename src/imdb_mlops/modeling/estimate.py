"""A rough training-time estimate, printed before CPU training starts.

Anchored on a measurement on this project's reference machine (2 CPU cores): fine-tuning
all-MiniLM-L6-v2 (6 layers, hidden 384) with dynamic padding ran at about 1,000 tokens/s.
Compute per token scales with layers x hidden^2, and throughput with the core count.
"""

from __future__ import annotations

import os
from typing import Any

from imdb_mlops.config import TrainConfig

REFERENCE_TOKENS_PER_S = 1000.0
REFERENCE_CORES = 2
REFERENCE_UNITS = 6 * 384**2  # layers x hidden^2 of all-MiniLM-L6-v2


def cpu_training_seconds(
    n_samples: int, mean_tokens: float, epochs: float, num_layers: int, hidden_size: int, cores: int | None = None
) -> float:
    """Estimated wall time (s) of ``epochs`` passes over ``n_samples`` reviews on this CPU."""
    cores = cores or os.cpu_count() or 1
    speed = REFERENCE_TOKENS_PER_S * (REFERENCE_UNITS / (num_layers * hidden_size**2)) * (cores / REFERENCE_CORES)
    return n_samples * mean_tokens * epochs / speed


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cpu_training_message(
    train: TrainConfig, model_name: str, n_rows: int, mean_tokens: float, model_config: Any
) -> str:
    """One line for CPU users: how many review passes training makes and roughly how long it takes."""
    from imdb_mlops.common.hub import short_name

    samples = n_rows * train.epochs
    if train.max_steps > 0:
        samples = min(samples, train.max_steps * train.per_device_train_batch_size * train.gradient_accumulation_steps)
    seconds = cpu_training_seconds(
        int(samples), mean_tokens, 1.0, model_config.num_hidden_layers, model_config.hidden_size
    )
    return (
        f"[bold]No GPU:[/] training {short_name(model_name)} on {int(samples):,} review passes "
        f"(~{mean_tokens:.0f} tokens each) on {os.cpu_count()} CPU cores will take roughly "
        f"{human_duration(seconds)}. For a quick CPU run see docs/offline.md, 'Quick CPU profile'."
    )

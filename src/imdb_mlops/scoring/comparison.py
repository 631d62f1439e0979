"""Old champion vs new champion on the same reviews: the latest scoring batch re-scored after a
promotion (the ``rescore-on-champion`` Prefect deployment runs this).

Entry point: :func:`compare_champions`. It reads the newest batch under ``scores/`` (a folder with
``predictions.parquet`` written by :func:`~imdb_mlops.scoring.batch.score`), scores its reviews
with both versions, and writes ``comparison.json`` and ``predictions.parquet`` (both versions'
labels and probabilities per review) atomically into a new folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.labels import LABELS
from imdb_mlops.config import RegistryConfig, TrackingConfig
from imdb_mlops.registry.predict import predict_chunked
from imdb_mlops.registry.versions import connect, get_version, load_pyfunc
from imdb_mlops.scoring.batch import write_scores

console = Console(stderr=True)


def latest_batch(scores_dir: Path) -> Path | None:
    """The newest complete scoring batch under ``scores_dir`` (folders are named by their UTC start
    time; a streamed batch is complete once its ``drift.json`` is written)."""
    found = scores_dir.glob("*/predictions.parquet") if scores_dir.is_dir() else []
    batches = [p.parent for p in found if p.is_file() or (p.parent / "drift.json").is_file()]
    return max(batches, key=lambda p: (p.stat().st_mtime, p.name)) if batches else None


def comparison_figures(previous: pd.DataFrame, new: pd.DataFrame) -> dict[str, Any]:
    """Agreement and label shift between two models' predictions of the same reviews."""
    before = (previous["label"] == LABELS[1]).to_numpy()
    after = (new["label"] == LABELS[1]).to_numpy()
    change = new["positive_probability"].to_numpy() - previous["positive_probability"].to_numpy()
    return {
        "reviews": len(before),
        "agreement": float(np.mean(before == after)) if len(before) else 1.0,
        "positive_share_previous": float(before.mean()) if len(before) else 0.0,
        "positive_share_new": float(after.mean()) if len(after) else 0.0,
        "label_shift": float(after.mean() - before.mean()) if len(before) else 0.0,
        "negative_to_positive": int(np.sum(~before & after)),
        "positive_to_negative": int(np.sum(before & ~after)),
        "mean_abs_probability_change": float(np.abs(change).mean()) if len(change) else 0.0,
    }


def compare_champions(
    registry: RegistryConfig,
    tracking: TrackingConfig,
    batch_dir: Path,
    previous: str,
    new: str,
    out_dir: Path,
    project_dir: Path = Path("."),
) -> dict[str, Any]:
    """Score the batch's reviews with versions ``previous`` and ``new``; write and return the figures."""
    reviews = pd.read_parquet(batch_dir / "predictions.parquet", columns=["text"])
    if len(reviews) == 0:
        raise PipelineError(f"{batch_dir / 'predictions.parquet'}: the batch holds no reviews")
    client = connect(tracking, project_dir)
    name = registry.model_name
    scored = {}
    for which, ref in (("previous", previous), ("new", new)):
        number = str(get_version(client, name, ref).version)  # a clear error for a missing version
        model = load_pyfunc(f"models:/{name}/{number}")
        scored[which] = (
            number,
            predict_chunked(
                model,
                reviews["text"].tolist(),
                registry.max_texts_per_request,
                registry.max_text_chars,
                f"reviews with version {number}",
            ),
        )
    (old_version, old), (new_version, current) = scored["previous"], scored["new"]
    report = {
        "model": name,
        "batch": batch_dir.name,
        "previous_version": old_version,
        "new_version": new_version,
        **comparison_figures(old, current),
    }
    table = reviews.assign(
        label_previous=old["label"],
        positive_probability_previous=old["positive_probability"],
        label_new=current["label"],
        positive_probability_new=current["positive_probability"],
    )
    write_scores(out_dir, "rescore", table, ("comparison.json", report))
    print_comparison(report)
    return report


def print_comparison(report: dict[str, Any]) -> None:
    table = Table(
        title=f"{report['model']}: version {report['previous_version']} -> {report['new_version']} "
        f"on batch {report['batch']} ({report['reviews']:,} reviews)"
    )
    table.add_column("")
    table.add_column("", justify="right")
    for key in ("agreement", "positive_share_previous", "positive_share_new", "label_shift"):
        table.add_row(key.replace("_", " "), f"{report[key]:.4f}")
    for key in ("negative_to_positive", "positive_to_negative"):
        table.add_row(key.replace("_", " "), f"{report[key]:,}")
    console.print(table)

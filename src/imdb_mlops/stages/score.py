"""Batch scoring's entry (``imdb-mlops score``, the Prefect scoring flow): the boundary that reads
``params`` and hands each part its own section. The work is :func:`imdb_mlops.scoring.batch.score_batch`
(Ray Data, parts written as they are scored, resumable, a drift report last)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_mlops.config import Params
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.splits import read_split
from imdb_mlops.registry.versions import connect
from imdb_mlops.scoring.batch import score_batch


def score(
    params: Params,
    input_path: Path,
    out_dir: Path,
    model_ref: str | None = None,
    raw_dir: Path = Path("data/raw"),
    project_dir: Path = Path("."),
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Score ``input_path`` with the registered model (default ``champion``) into ``out_dir``;
    the drift reference is a seeded sample of the training split in ``raw_dir``."""
    cfg = params.scoring
    reference = stratified_sample(read_split(raw_dir, "train"), cfg.reference_samples, params.seed)
    client = connect(params.tracking, project_dir)
    return score_batch(
        cfg, params.registry, client, reference.reset_index(drop=True), input_path, out_dir, model_ref, project_dir,
        ray_address,
    )  # fmt: skip

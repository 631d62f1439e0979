"""The ingested splits in ``data/raw``: their names and the one way every stage reads them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from imdb_mlops.common.errors import PipelineError

SPLITS = ("train", "validation", "test")


def split_path(raw_dir: Path, split: str) -> Path:
    """``raw_dir/<split>.parquet``; a one-line error naming it when the ingest stage has not run."""
    path = raw_dir / f"{split}.parquet"
    if not path.exists():
        raise PipelineError(f"{path}: missing; run the ingest stage first (dvc repro ingest, or dvc pull)")
    return path


def read_split(raw_dir: Path, split: str, columns: Sequence[str] | None = ("text", "label")) -> pd.DataFrame:
    """One ingested split as a DataFrame (``columns`` only; ``None`` = all)."""
    return pd.read_parquet(split_path(raw_dir, split), columns=list(columns) if columns is not None else None)

"""Ingest stage: read IMDB reviews from any supported source, check them, split them.

Entry point: :func:`ingest`. **Reads** ``data.source`` (see :mod:`imdb_mlops.data.sources`), then
**computes** (:func:`prepare_splits`, pure: no I/O)

1. maps labels through ``data.label_map`` and rejects any label outside {0, 1} (naming the row),
2. drops rows whose bytes are not UTF-8 and rows with empty or whitespace-only text,
3. optionally turns HTML line breaks (``<br />``) into newlines,
4. splits a single-table source into train/test (seeded, stratified, ``data.test_size``),
5. drops duplicate texts within a split and (``data.drop_leakage``) train rows whose text is
   also in test,
6. carves a seeded, stratified validation split from train,
7. optionally subsamples each split, stratified (``data.max_samples``),

and writes ``train/validation/test.parquet`` plus a DVC metrics report, all-or-nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.files import atomic_outputs, refuse_foreign_targets, write_json
from imdb_mlops.config import DataConfig, Params
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.sources import BR_TAG, read_source
from imdb_mlops.data.splits import SPLITS

console = Console(stderr=True)


@dataclass
class IngestResult:
    splits: dict[str, pd.DataFrame]
    report: dict[str, Any]
    examples: dict[str, list[str]] = field(default_factory=dict)


def ingest(params: Params, out_dir: Path, report_path: Path) -> dict[str, Any]:
    """Run the stage: read ``params.data.source``, write ``out_dir/{split}.parquet`` and the report."""
    refuse_foreign_targets(out_dir, report_path, owner="ingest")
    fmt, frames = read_source(params.data, params.hub)
    result = prepare_splits(frames, params.data, params.seed)
    result.report["source"] = {"uri": params.data.source, "format": fmt, "digest": _digest(frames)}
    with atomic_outputs(out_dir, report_path, owner="ingest") as (tmp_dir, tmp_report):
        tmp_dir.mkdir()
        for split, frame in result.splits.items():
            frame.to_parquet(tmp_dir / f"{split}.parquet", index=False)
        write_json(tmp_report, result.report)
    _print_summary(result)
    return result.report


def prepare_splits(frames: dict[str, pd.DataFrame], data: DataConfig, seed: int) -> IngestResult:
    """Validate, clean, de-duplicate, split and subsample. Pure: no I/O."""
    dropped: dict[str, dict[str, int]] = {}
    examples: dict[str, list[str]] = {}
    rows_read = {name: len(frame) for name, frame in frames.items()}

    def drop(split: str, reason: str, frame: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
        count = int(mask.sum())
        if count:
            dropped.setdefault(reason, {})[split] = dropped.get(reason, {}).get(split, 0) + count
            examples.setdefault(reason, []).extend(frame.loc[mask, "origin"].head(3).tolist())
        return frame.loc[~mask]

    cleaned: dict[str, pd.DataFrame] = {}
    for name, frame in frames.items():
        frame = frame.assign(label=_map_labels(frame, data))
        frame = drop(name, "undecodable_bytes", frame, frame["text"].isna())
        if data.clean_html:
            frame = frame.assign(text=frame["text"].str.replace(BR_TAG, "\n", regex=True))
        frame = drop(name, "empty_text", frame, frame["text"].str.strip() == "")
        cleaned[name] = frame

    if "all" in cleaned:
        whole = cleaned.pop("all")
        _need_both_labels(whole, "the source")
        train, test = _split(whole, data.test_size, seed, "data.test_size", "the source")
        cleaned = {"train": train, "test": test}

    conflicts: dict[str, int] = {}
    if data.drop_duplicates:
        for name in ("train", "test"):
            frame = cleaned[name]
            repeated = frame["text"].duplicated(keep="first")
            conflicts[name] = int(frame.groupby("text")["label"].nunique().gt(1).sum())
            cleaned[name] = drop(name, "duplicate_within_split", frame, repeated)

    leaked = cleaned["train"]["text"].isin(set(cleaned["test"]["text"]))
    leakage = int(leaked.sum())
    if data.drop_leakage:
        cleaned["train"] = drop("train", "leakage_train_test", cleaned["train"], leaked)

    _need_both_labels(cleaned["train"], "train")
    if cleaned["test"].empty:
        raise PipelineError(
            f"data.source: the test split has no reviews (read: {rows_read.get('test', 0)}, after dropping "
            "empty, undecodable and duplicate texts: 0); the metrics and the promotion gate need test reviews"
        )
    warnings = []
    if cleaned["test"]["label"].nunique() < 2:
        only = "positive" if int(cleaned["test"]["label"].iloc[0]) == 1 else "negative"
        warnings.append(f"the test split holds {only} reviews only: ROC-AUC and F1 will be undefined or misleading")
    train, validation = _split(cleaned["train"], data.validation_size, seed, "data.validation_size", "train")
    splits = {"train": train, "validation": validation, "test": cleaned["test"]}

    for name in SPLITS:
        cap = getattr(data.max_samples, name)
        splits[name] = stratified_sample(splits[name], cap, seed)
        splits[name] = splits[name].sample(frac=1.0, random_state=seed).reset_index(drop=True).drop(columns=["origin"])
        splits[name]["label"] = splits[name]["label"].astype("int64")

    report = {
        "rows_read": rows_read,
        "rows_dropped": dropped,
        "duplicates_with_conflicting_labels": conflicts,
        "leakage_train_test": leakage,
        "splits": {name: _describe(frame) for name, frame in splits.items()},
        "warnings": warnings,
    }
    return IngestResult(splits=splits, report=report, examples=examples)


def _split(frame: pd.DataFrame, share: float, seed: int, key: str, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded split stratified by label; a one-line error naming ``key`` when either part would
    be too small to hold both labels."""
    held_out = round(len(frame) * share)
    if min(held_out, len(frame) - held_out) < 2:
        raise PipelineError(
            f"{key}: {share} of {len(frame)} reviews in {what} leaves {held_out} held out and "
            f"{len(frame) - held_out} kept; each part needs at least 2 (one per label)"
        )
    try:
        from sklearn.model_selection import train_test_split  # here: a refused input never pays its import

        return train_test_split(frame, test_size=share, stratify=frame["label"], random_state=seed)
    except ValueError as exc:
        raise PipelineError(
            f"{key}: cannot split {len(frame)} reviews of {what} this way ({first_line(exc)})"
        ) from None


def _map_labels(frame: pd.DataFrame, data: DataConfig) -> pd.Series:
    raw = frame["label"]
    if data.label_map is not None:
        mapped = raw.map(lambda v: data.label_map.get(_label_key(v)))  # type: ignore[union-attr]
    else:
        mapped = raw.map(_as_binary)
    bad = mapped.isna() | ~mapped.isin([0, 1])
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        more = int(bad.sum()) - 1
        hint = "not in data.label_map" if data.label_map is not None else "set data.label_map to map labels to 0/1"
        raise PipelineError(
            f"{frame['origin'].iloc[first]}: label {_shown(raw.iloc[first])} is not 0 or 1 ({hint})"
            + (f"; {more} more rows like it" if more else "")
        )
    return mapped.astype("int64")


def _as_binary(value: Any) -> int | None:
    """0 or 1 for 0, 1, 0.0, 1.0, "0", "1" (as CSV and parquet files store them); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    key = _label_key(value)
    return int(key) if key in ("0", "1") else None


def _shown(value: Any) -> str:
    return repr(value.item() if hasattr(value, "item") else value)


def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _need_both_labels(frame: pd.DataFrame, what: str) -> None:
    counts = frame["label"].value_counts()
    if len(frame) < 4 or counts.get(0, 0) < 2 or counts.get(1, 0) < 2:
        raise PipelineError(
            f"data.source: {what} has too few reviews to split "
            f"({counts.get(0, 0)} negative, {counts.get(1, 0)} positive; need at least 2 of each)"
        )


def _percentiles(values: pd.Series) -> dict[str, float]:
    if values.empty:
        return {}
    q = np.percentile(values.to_numpy(), [5, 50, 95, 99])
    p5, p50, p95, p99 = (round(float(v), 1) for v in q)
    return {"p5": p5, "p50": p50, "p95": p95, "p99": p99, "max": float(values.max())}


def _describe(frame: pd.DataFrame) -> dict[str, Any]:
    positives = int(frame["label"].sum())
    return {
        "rows": len(frame),
        "negative": len(frame) - positives,
        "positive": positives,
        "positive_share": round(positives / len(frame), 4) if len(frame) else 0.0,
        "chars": _percentiles(frame["text"].str.len()),
        "words": _percentiles(frame["text"].str.split().str.len()),
    }


def _digest(frames: dict[str, pd.DataFrame]) -> str:
    """Content digest of what was read (text + label per split), independent of the format."""
    sha = hashlib.sha256()
    for name in sorted(frames):
        sha.update(name.encode())
        hashed = pd.util.hash_pandas_object(frames[name][["text", "label"]].astype(str), index=False)
        sha.update(hashed.to_numpy().tobytes())
    return sha.hexdigest()[:16]


def _print_summary(result: IngestResult) -> None:
    table = Table(title="Ingested splits")
    for column in ("split", "rows", "negative", "positive", "positive share", "median words", "p95 words"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for name, info in result.report["splits"].items():
        words = info["words"]
        table.add_row(
            name,
            f"{info['rows']:,}",
            f"{info['negative']:,}",
            f"{info['positive']:,}",
            f"{info['positive_share']:.3f}",
            f"{words.get('p50', 0):.0f}",
            f"{words.get('p95', 0):.0f}",
        )
    console.print(table)
    for reason, per_split in result.report["rows_dropped"].items():
        where = ", ".join(result.examples.get(reason, []))
        hint = " (not UTF-8? set data.encoding, e.g. latin-1)" if reason == "undecodable_bytes" else ""
        console.print(f"[yellow]dropped[/] {sum(per_split.values())} rows ({reason}: {per_split}){hint}; e.g. {where}")
    for warning in result.report["warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}")
    if result.report["leakage_train_test"]:
        console.print(f"train/test leakage: {result.report['leakage_train_test']} train texts also in test")

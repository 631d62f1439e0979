"""Batch scoring: new reviews -> predictions of a registered model (default ``champion``) and a
drift report against the training data (:mod:`imdb_mlops.scoring.drift`).

Entry point: :func:`score`. Inputs: one file or a folder of files (searched recursively) in any of

- parquet, CSV, JSONL: one review per row, in column ``scoring.text_column``;
- ``.txt``: one review per file (as in aclImdb); a single ``.txt`` file given directly holds one
  review per non-empty line.

Outputs, written atomically into ``out_dir``: ``predictions.parquet`` (source file, text, label,
probability, positive_probability) and ``drift.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.files import atomic_outputs, write_json
from imdb_mlops.config import Params
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.splits import read_split
from imdb_mlops.registry.predict import predict_chunked, served_choice
from imdb_mlops.registry.versions import connect, load_pyfunc, resolve_model_uri, version_of_uri
from imdb_mlops.scoring.drift import drift_report

console = Console(stderr=True)
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".txt": "txt"}


def read_new_reviews(path: Path, text_column: str) -> pd.DataFrame:
    """``source`` and ``text`` of every review under ``path``; clear errors for unusable input."""
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    # files only: a Spark/Dask dataset folder (preds.parquet/part-*.parquet) is read through its parts
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in FORMATS and p.is_file())
    )
    if path.is_file() and path.suffix.lower() not in FORMATS:
        raise PipelineError(f"{path}: unsupported format (expected {', '.join(FORMATS)})")
    if not files:
        raise PipelineError(f"{path}: no reviews found (no {', '.join(FORMATS)} files)")
    frames = []
    for file in files:
        kind = FORMATS[file.suffix.lower()]
        if kind == "txt":
            content = _read_text(file)
            texts = [line for line in content.splitlines() if line.strip()] if path.is_file() else [content]
            frames.append(pd.DataFrame({"source": str(file), "text": texts}))
            continue
        try:
            if kind == "parquet":
                table = pd.read_parquet(file)
            elif kind == "csv":
                table = pd.read_csv(file, dtype=object, keep_default_na=False)
            else:
                table = pd.read_json(file, lines=True, dtype=False)
        except Exception as exc:
            raise PipelineError(
                f"{file}: cannot read as {kind} ({type(exc).__name__}: {first_line(exc, 150)})"
            ) from None
        if text_column not in table.columns:
            raise PipelineError(
                f"{file}: no text column '{text_column}' (columns: {', '.join(map(str, table.columns)) or 'none'}; "
                "set scoring.text_column)"
            )
        texts = table[text_column]
        bad = [i for i, value in enumerate(texts) if not isinstance(value, str)]
        if bad:
            raise PipelineError(f"{file}: row {bad[0] + 1}: '{text_column}' is not text ({texts.iloc[bad[0]]!r})")
        frames.append(pd.DataFrame({"source": str(file), "text": texts.astype(str).tolist()}))
    reviews = pd.concat(frames, ignore_index=True).astype({"text": "object"})  # an empty file: no float column
    reviews = reviews[reviews["text"].map(lambda text: bool(str(text).strip()))].reset_index(drop=True)
    if reviews.empty:
        raise PipelineError(f"{path}: no reviews found (every text is empty)")
    return reviews


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def score(
    params: Params,
    input_path: Path,
    out_dir: Path,
    model_ref: str | None = None,
    raw_dir: Path = Path("data/raw"),
    project_dir: Path = Path("."),
) -> dict[str, Any]:
    """Score ``input_path`` with the registered model; write predictions and the drift report.
    ``project_dir`` locates the default tracking store (``mlflow.db``) when no URI is set."""
    cfg = params.scoring
    reviews = read_new_reviews(input_path, cfg.text_column)
    reference = stratified_sample(read_split(raw_dir, "train"), cfg.reference_samples, params.seed).reset_index(
        drop=True
    )
    client = connect(params, project_dir)
    uri = resolve_model_uri(model_ref, params.registry.model_name)
    version = version_of_uri(
        client, uri, params.registry.model_name
    )  # a clear error when there is no such version or alias yet
    model = load_pyfunc(uri)
    # over-long reviews are scored on their start rather than refused
    predictions = predict_chunked(
        model, reviews["text"].tolist(), params.registry.max_texts_per_request, params.registry.max_text_chars
    )
    scored = pd.concat([reviews, predictions], axis=1)
    tokenizer = model.unwrap_python_model().tokenizer
    report = {
        "model_uri": uri,
        "model_version": version,
        "input": str(input_path),
        "reviews": len(scored),
        "served_variant": served_choice(model),
        "drift": drift_report(reference, scored, tokenizer, cfg),
    }
    report["warnings"] = [f"{name}: {d['warning']}" for name, d in report["drift"].items() if d.get("warning")]
    write_scores(out_dir, "score", scored, ("drift.json", report))
    _print_report(report)
    return report


def write_scores(out_dir: Path, owner: str, predictions: pd.DataFrame, report: tuple[str, dict[str, Any]]) -> None:
    """``out_dir`` made atomically: ``predictions.parquet`` and the report (file name, content)."""
    with atomic_outputs(out_dir, owner=owner) as (tmp,):
        tmp.mkdir()
        predictions.to_parquet(tmp / "predictions.parquet", index=False)
        write_json(tmp / report[0], report[1])


def _print_report(report: dict[str, Any]) -> None:
    table = Table(
        title=f"{report['reviews']:,} reviews scored with {report['model_uri']} (version {report['model_version']})"
    )
    for column in ("check", "reference", "current", "PSI", "status"):
        table.add_column(column, justify="left" if column in ("check", "status") else "right")
    drift = report["drift"]
    rows = [
        (
            "length (words, median)",
            drift["length_words"]["reference_median"],
            drift["length_words"]["median"],
            drift["length_words"]["psi"],
            drift["length_words"],
        ),
        (
            "unknown-token rate",
            drift["unknown_token_rate"]["reference"],
            drift["unknown_token_rate"]["current"],
            "",
            drift["unknown_token_rate"],
        ),
        (
            "predicted positive share",
            drift["predicted_labels"]["reference_positive_share"],
            drift["predicted_labels"]["positive_share"],
            drift["predicted_labels"]["psi"],
            drift["predicted_labels"],
        ),
    ]
    for name, ref, cur, value, entry in rows:
        table.add_row(name, str(ref), str(cur), str(value), "[bold yellow]warning[/]" if entry.get("warning") else "ok")
    console.print(table)
    for warning in report["warnings"]:
        console.print(f"[bold yellow]drift warning:[/] {warning}")

"""Batch scoring: new reviews -> predictions of a registered model (default ``champion``) and a
drift report against the training data.

Entry point: :func:`score`. Inputs: one file or a folder of files (searched recursively) in any of

- parquet, CSV, JSONL: one review per row, in column ``scoring.text_column``;
- ``.txt``: one review per file (as in aclImdb); a single ``.txt`` file given directly holds one
  review per non-empty line.

Outputs, written atomically into ``out_dir``: ``predictions.parquet`` (source file, text, label,
probability, positive_probability) and ``drift.json``: review length distribution (words, PSI over
the training data's deciles), unknown-token rate (the model's own tokenizer), predicted-label
distribution (PSI against the training labels), each with a warning when past its threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from imdb_mlops.config import Params, ScoringConfig
from imdb_mlops.errors import PipelineError
from imdb_mlops.outputs import atomic_outputs, write_json

console = Console(stderr=True)
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".txt": "txt"}
EPSILON = 1e-4  # floor for empty bins in the PSI


def read_new_reviews(path: Path, text_column: str) -> pd.DataFrame:
    """``source`` and ``text`` of every review under ``path``; clear errors for unusable input."""
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in FORMATS)
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
        except Exception as exc:  # noqa: BLE001 - any reader error is a bad file
            raise PipelineError(f"{file}: cannot read as {kind} ({type(exc).__name__}: {str(exc).splitlines()[0][:150]})") from None
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
    reviews = pd.concat(frames, ignore_index=True)
    reviews = reviews[reviews["text"].str.strip() != ""].reset_index(drop=True)
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
    from imdb_mlops.registry import connect, load_pyfunc, predict_chunked, resolve_model_uri

    cfg = params.scoring
    reviews = read_new_reviews(input_path, cfg.text_column)
    reference = _reference(raw_dir, cfg, params.seed)
    client = connect(params, project_dir)
    uri = resolve_model_uri(model_ref, params.registry.model_name)
    version = _version_of(uri, params, client)  # a clear error when there is no such version or alias yet
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
        "drift": drift_report(reference, scored, tokenizer, cfg),
    }
    report["warnings"] = [f"{name}: {d['warning']}" for name, d in report["drift"].items() if d.get("warning")]
    with atomic_outputs(out_dir) as (tmp,):
        tmp.mkdir()
        scored.to_parquet(tmp / "predictions.parquet", index=False)
        write_json(tmp / "drift.json", report)
    _print_report(report)
    return report


def _reference(raw_dir: Path, cfg: ScoringConfig, seed: int) -> pd.DataFrame:
    path = raw_dir / "train.parquet"
    if not path.exists():
        raise PipelineError(f"{path}: missing; the drift report compares against the training data (dvc pull or dvc repro ingest)")
    train = pd.read_parquet(path, columns=["text", "label"])
    if len(train) > cfg.reference_samples:
        train = train.sample(n=cfg.reference_samples, random_state=seed)
    return train.reset_index(drop=True)


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
    ref_unk, new_unk = unknown_rate(tokenizer, reference["text"].tolist()), unknown_rate(tokenizer, scored["text"].tolist())
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
        "predicted_labels": {"reference_positive_share": round(ref_pos, 4), "positive_share": round(new_pos, 4), "psi": round(label_psi, 4)},
    }
    if length_psi > cfg.psi_warning:
        report["length_words"]["warning"] = f"PSI {length_psi:.3f} > {cfg.psi_warning} (review lengths differ from training)"
    if new_unk - ref_unk > cfg.unknown_token_increase:
        report["unknown_token_rate"]["warning"] = (
            f"{new_unk:.2%} unknown tokens vs {ref_unk:.2%} in training (> +{cfg.unknown_token_increase:.0%})"
        )
    if label_psi > cfg.psi_warning:
        report["predicted_labels"]["warning"] = (
            f"PSI {label_psi:.3f} > {cfg.psi_warning} ({new_pos:.1%} predicted positive vs {ref_pos:.1%} in training)"
        )
    return report


def _version_of(uri: str, params: Params, client: Any) -> str | None:
    from imdb_mlops.registry import get_version

    prefix = f"models:/{params.registry.model_name}"
    if not uri.startswith(prefix):
        return None
    ref = uri[len(prefix) :].lstrip("/@")
    return str(get_version(client, params.registry.model_name, ref).version)


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['reviews']:,} reviews scored with {report['model_uri']} (version {report['model_version']})")
    for column in ("check", "reference", "current", "PSI", "status"):
        table.add_column(column, justify="left" if column in ("check", "status") else "right")
    drift = report["drift"]
    rows = [
        ("length (words, median)", drift["length_words"]["reference_median"], drift["length_words"]["median"], drift["length_words"]["psi"], drift["length_words"]),
        ("unknown-token rate", drift["unknown_token_rate"]["reference"], drift["unknown_token_rate"]["current"], "", drift["unknown_token_rate"]),
        ("predicted positive share", drift["predicted_labels"]["reference_positive_share"], drift["predicted_labels"]["positive_share"], drift["predicted_labels"]["psi"], drift["predicted_labels"]),
    ]
    for name, ref, cur, value, entry in rows:
        table.add_row(name, str(ref), str(cur), str(value), "[bold yellow]warning[/]" if entry.get("warning") else "ok")
    console.print(table)
    for warning in report["warnings"]:
        console.print(f"[bold yellow]drift warning:[/] {warning}")

"""Batch scoring: new reviews -> predictions of a registered model (default ``champion``) and a
drift report against the training data (:mod:`imdb_mlops.scoring.drift`).

Entry point: :func:`score_batch` (called by :func:`imdb_mlops.stages.score.score`). The input
(any format of :mod:`imdb_mlops.scoring.inputs`) is cut into pieces and scored on Ray Data
(:mod:`imdb_mlops.scoring.streaming`): in this process's own Ray, sized to the machine, or on a
cluster (``ray_address``). Outputs, in ``out_dir``:

- ``predictions.parquet/``: a parquet dataset (``pd.read_parquet`` reads it whole), one part per
  piece (source file, text, label, probability, positive_probability), each written atomically as
  soon as it is scored. A rerun for the same input and model version scores only the missing parts
  (resumable); parts of another input or version are removed.
- ``drift.json``: written last (atomically); its presence says the batch is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, claim_folder, write_json
from imdb_mlops.config import RegistryConfig, ScoringConfig
from imdb_mlops.registry.tracking import tracking_uri
from imdb_mlops.registry.versions import resolve_model_uri, version_of_uri
from imdb_mlops.scoring.drift import drift_report, merge_aggregates
from imdb_mlops.scoring.inputs import plan_pieces, read_new_reviews  # noqa: F401 - read_new_reviews: API
from imdb_mlops.scoring.streaming import part_aggregates, ray_session, remove_unfinished_parts, score_pieces

console = Console(stderr=True)
PARTS = "predictions.parquet"
REPORT = "drift.json"


def score_batch(
    cfg: ScoringConfig,
    registry: RegistryConfig,
    client: Any,
    reference: pd.DataFrame,
    input_path: Path,
    out_dir: Path,
    model_ref: str | None = None,
    project_dir: Path = Path("."),
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Score ``input_path`` with the registered model (``client``'s registry); write predictions and
    the drift report against ``reference`` (training reviews). ``project_dir`` locates the default
    tracking store (``mlflow.db``) when no URI is set; ``ray_address`` (else ``RAY_ADDRESS``) sends
    the job to a Ray cluster."""
    pieces = plan_pieces(input_path, cfg.text_column, cfg.rows_per_part)
    uri = resolve_model_uri(model_ref, registry.model_name)
    version = version_of_uri(client, uri, registry.model_name)  # a clear error when there is none
    salt = json.dumps([registry.model_name, version, cfg.text_column, registry.max_text_chars])
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    with _scoring_folder(out_dir) as (parts_dir, made_now):
        plan = [(piece, parts_dir / f"part-{i:05d}-{piece.key(salt)}.parquet") for i, piece in enumerate(pieces)]
        done = _finished_parts(parts_dir, [part for _, part in plan])
        todo = [(piece, part) for piece, part in plan if part not in done]
        console.print(
            f"{len(plan):,} parts to write: {len(done):,} already there (same input and model version), "
            f"{len(todo):,} to score" + (f" on the Ray cluster at {address}" if address else ""),
            highlight=False,
        )
        if todo:
            settings = {
                "reference_texts": reference["text"].tolist(),
                "text_column": cfg.text_column,
                "chunk": registry.max_texts_per_request,
                "truncate_chars": registry.max_text_chars,  # over-long reviews: scored on their start
            }
            pieces_scored = score_pieces(todo, uri, _actor_tracking_uri(project_dir), settings, cfg.workers)
            # closed (its Ray Data executor stopped) before Ray is, whatever stops the loop
            with ray_session(address), contextlib.closing(pieces_scored):
                for part, aggregates in pieces_scored:
                    done[part] = aggregates
        current = merge_aggregates(done[part] for _, part in plan)
        if current["rows"] == 0:
            if made_now:
                _remove_tree(out_dir)
            raise PipelineError(f"{input_path}: no reviews found (every text is empty)")
        first = done[plan[0][1]]
        report = {
            "model_uri": uri,
            "model_version": version,
            "input": str(input_path),
            "reviews": current["rows"],
            "parts": len(plan),
            "parts_reused": len(plan) - len(todo),
            "served_variant": first.get("served_variant"),  # each actor chooses at load, as a server does
            "parts_by_variant": _count(done[part].get("served_variant") for _, part in plan),
            "drift": drift_report(reference, tuple(first["reference_unknown"]), current, cfg),
        }
        report["warnings"] = [f"{name}: {d['warning']}" for name, d in report["drift"].items() if d.get("warning")]
        tmp = out_dir / f".{REPORT}.{os.getpid()}.tmp"
        write_json(tmp, report)
        os.replace(tmp, out_dir / REPORT)
    _print_report(report)
    return report


@contextlib.contextmanager
def _scoring_folder(out_dir: Path) -> Iterator[tuple[Path, bool]]:
    """``out_dir`` claimed for ``score`` and locked for this run: (its parts folder, made now).
    The report of an earlier run is removed first: the batch is complete again when it is back."""
    from filelock import FileLock, Timeout

    made_now = claim_folder(out_dir, "score")
    try:
        with FileLock(out_dir / ".score.lock", timeout=0):
            for leftover in out_dir.glob(f".{REPORT}.*.tmp"):
                leftover.unlink()
            (out_dir / REPORT).unlink(missing_ok=True)
            parts_dir = out_dir / PARTS
            if parts_dir.is_file():  # a batch written before scoring was streamed
                parts_dir.unlink()
            parts_dir.mkdir(exist_ok=True)
            remove_unfinished_parts(parts_dir)
            try:
                yield parts_dir, made_now
            finally:  # after the Ray session: an interrupted actor may have left a part half-written
                if parts_dir.is_dir():
                    remove_unfinished_parts(parts_dir)
    except Timeout:
        raise PipelineError(f"{out_dir}: another `imdb-mlops score` is writing there; wait for it") from None


def _finished_parts(parts_dir: Path, planned: list[Path]) -> dict[Path, dict[str, Any]]:
    """The planned parts already written (with their aggregates); everything else in the folder
    (parts of another input or model version, temporaries of a killed run) is removed."""
    wanted = set(planned)
    done = {}
    for path in parts_dir.iterdir():
        aggregates = part_aggregates(path) if path in wanted else None
        if aggregates is None:
            _remove_tree(path)
        else:
            done[path] = aggregates
    return done


def _count(choices: Iterator[dict[str, Any] | None]) -> dict[str, int]:
    from collections import Counter

    return dict(Counter((choice or {}).get("variant", "unknown") for choice in choices))


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _actor_tracking_uri(project_dir: Path) -> str:
    """The tracking URI as the scoring actors must see it (a relative SQLite path made absolute:
    actors do not share this process's working folder)."""
    uri = tracking_uri(project_dir)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


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

"""Prefect batch-scoring flow: new reviews scored by ``models:/<name>@champion``, with a drift
report against the training data, published as a Prefect artifact and written to files.

    python -m pipelines.scoring_flow incoming/ --out scores/2026-11-25
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from pipelines import _prefect_env
except ImportError:  # pragma: no cover - run as a file by a worker
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines import _prefect_env  # noqa: F401

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from imdb_mlops.config import load_params
from imdb_mlops.stages.score import score


@task(task_run_name="score {input_path}", retries=1, retry_delay_seconds=10)
def score_reviews(
    input_path: str, out_dir: str, model: str | None, project_dir: str, ray_address: str | None = None
) -> dict[str, Any]:
    """The batch on Ray (``ray_address``: a cluster); a retry scores only the parts not yet written."""
    root = Path(project_dir).resolve()
    params = load_params(root / "params.yaml")
    return score(
        params, Path(input_path), Path(out_dir), model, root / "data" / "raw", project_dir=root, ray_address=ray_address
    )


DRIFT_ROWS = (
    ("review length (words, median)", "length_words", "reference_median", "median", "psi"),
    ("unknown-token rate", "unknown_token_rate", "reference", "current", None),
    ("predicted positive share", "predicted_labels", "reference_positive_share", "positive_share", "psi"),
)


def drift_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The drift checks as rows of a Prefect table artifact."""
    rows = []
    for title, check, reference, current, psi in DRIFT_ROWS:
        entry = report["drift"][check]
        rows.append(
            {
                "check": title,
                "reference": entry[reference],
                "current": entry[current],
                "psi": entry[psi] if psi else None,
                "status": "warning" if entry.get("warning") else "ok",
            }
        )
    return rows


def drift_markdown(report: dict[str, Any], out_dir: str) -> str:
    drift = report["drift"]
    lines = [
        f"# Batch scoring: {report['reviews']:,} reviews",
        "",
        f"Model `{report['model_uri']}` (version {report['model_version']}); "
        f"predictions in `{out_dir}/predictions.parquet/` ({report['parts']} parts).",
        "",
        "| check | reference | current | PSI | status |",
        "|---|---|---|---|---|",
    ]
    for title, check, reference, current, psi in DRIFT_ROWS:
        entry = drift[check]
        status = "**warning**" if entry.get("warning") else "ok"
        lines.append(f"| {title} | {entry[reference]} | {entry[current]} | {entry[psi] if psi else ''} | {status} |")
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


@flow(name="imdb-scoring", validate_parameters=True)
def scoring_flow(
    input_path: str,
    out_dir: str | None = None,
    model: str | None = None,
    project_dir: str = ".",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Score ``input_path`` with the champion (or ``model``) on Ray (this machine, or the cluster at
    ``ray_address`` / ``RAY_ADDRESS``); drift report as artifact and file."""
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir or str(root / "scores" / stamp)
    report = score_reviews(input_path, out, model, str(root), ray_address)
    for warning in report["warnings"]:
        logger.warning("drift: %s", warning)
    create_markdown_artifact(key="imdb-scoring-drift", markdown=drift_markdown(report, out), description="Drift report")
    create_table_artifact(
        key="imdb-scoring-drift-table",
        table=drift_table(report),
        description=f"Drift of {report['reviews']:,} reviews scored by version {report['model_version']}",
    )
    return {**report, "out_dir": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the scoring flow once, locally.")
    parser.add_argument("input_path")
    parser.add_argument("--out")
    parser.add_argument("--model", "-m")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--ray-address", help="Ray cluster to score on (default: RAY_ADDRESS, else this machine)")
    args = parser.parse_args(argv)
    result = scoring_flow(
        input_path=args.input_path,
        out_dir=args.out,
        model=args.model,
        project_dir=args.project_dir,
        ray_address=args.ray_address,
    )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Prefect re-scoring flow: after ``champion`` moves, the latest scoring batch is scored again by the
previous and the new champion, and the comparison (agreement, label shift) is published as a table
artifact and written to ``rescores/<time>-v<previous>-v<new>/``.

The ``rescore-on-champion`` deployment in ``prefect.yaml`` runs it on the Prefect event
``imdb-mlops.champion.changed`` that the webhook receiver (``imdb-mlops webhooks serve``) emits.

    python -m pipelines.rescoring_flow 3 --previous 2
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
from imdb_mlops.scoring.comparison import compare_champions, latest_batch

ARTIFACT_KEY = "imdb-champion-comparison"


@task(task_run_name="re-score {batch_dir} with versions {previous} and {new}")
def rescore(batch_dir: str, previous: str, new: str, out_dir: str, project_dir: str) -> dict[str, Any]:
    root = Path(project_dir).resolve()
    params = load_params(root / "params.yaml")
    return compare_champions(
        params.registry, params.tracking, Path(batch_dir), previous, new, Path(out_dir), project_dir=root
    )


@flow(name="imdb-rescoring", validate_parameters=True)
def rescoring_flow(
    version: str, previous_version: str | None = None, project_dir: str = ".", scores_dir: str | None = None
) -> dict[str, Any]:
    """Compare the champion ``previous_version`` with the new one ``version`` on the newest batch."""
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    batch = latest_batch(Path(scores_dir) if scores_dir else root / "scores")
    # the trigger renders a missing previous_version (the first champion) as the text "None"
    if not previous_version or previous_version in ("None", version):
        reason = f"version {version} has no earlier champion to compare with"
    elif batch is None:
        reason = f"no scoring batch under {scores_dir or 'scores/'} yet (the scoring flow writes them)"
    else:
        reason = ""
    if reason:
        logger.info("nothing to compare: %s", reason)
        create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"# Champion {version}\n\nNothing to compare: {reason}.\n")
        return {"compared": False, "reason": reason}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = root / "rescores" / f"{stamp}-v{previous_version}-v{version}"
    report = rescore(str(batch), previous_version, version, str(out), str(root))
    rows = [
        {"what": key.replace("_", " "), "value": report[key]}
        for key in ("reviews", "agreement", "positive_share_previous", "positive_share_new", "label_shift",
                    "negative_to_positive", "positive_to_negative", "mean_abs_probability_change")
    ]  # fmt: skip
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=rows,
        description=f"{report['model']}: champion {previous_version} -> {version} on batch {batch.name}",
    )
    logger.info(
        "agreement %.4f, label shift %+.4f on %d reviews", report["agreement"], report["label_shift"], report["reviews"]
    )
    return {"compared": True, "out_dir": str(out), **report}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the re-scoring flow once, locally.")
    parser.add_argument("version", help="the new champion")
    parser.add_argument("--previous", help="the champion before it")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--scores-dir")
    args = parser.parse_args(argv)
    result = rescoring_flow(
        version=args.version, previous_version=args.previous, project_dir=args.project_dir, scores_dir=args.scores_dir
    )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

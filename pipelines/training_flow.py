"""Prefect training flow: one task per DVC stage, in the order of DVC's own graph.

Each task runs ``dvc repro --single-item <stage>``, so ``dvc.lock`` stays the record and unchanged
stages are skipped exactly as ``dvc repro`` skips them; a stage that ``dvc status`` finds unchanged,
with nothing upstream changed or re-run, is marked skipped without starting DVC at all. Flow parameters override params the way
``dvc exp run --set-param`` does (validated first; written into params.yaml, which DVC tracks), and
the run records them (Prefect artifact, MLflow training-run tags). Retries and timeouts per stage
come from ``orchestration.*`` in params.yaml. The flow ends with the register stage's promotion
gate and publishes a markdown summary artifact.

    python -m pipelines.training_flow --set train.learning_rate=1e-4 --profile cpu-quick
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

try:  # run as a file by a Prefect worker (entrypoint pipelines/training_flow.py:training_flow)
    from pipelines import _prefect_env
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines import _prefect_env  # noqa: F401

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run

from imdb_mlops.common.errors import ParamsError
from imdb_mlops.common.files import read_json
from imdb_mlops.config import load_params
from imdb_mlops.config.overrides import parse_assignments, resolve_overrides, write_overrides
from imdb_mlops.orchestration.dvc_stages import (
    StageResult,
    changed_stages,
    check_stage_settings,
    needs_dvc,
    run_stage,
    stage_graph,
    stage_settings,
    tag_training_run,
)
from imdb_mlops.orchestration.summary import summary, summary_markdown


@task(task_run_name="dvc repro {stage}")
def reproduce_stage(stage: str, project_dir: str) -> StageResult:
    logger = get_run_logger()
    result = run_stage(stage, Path(project_dir), log=logger.info)
    logger.info("stage %s %s in %.1f s", stage, "ran" if result.ran else "skipped (unchanged)", result.seconds)
    return result


def mlflow_run_link(root: Path, run_id: str) -> tuple[str, str]:
    """The MLflow UI page of the training run: on the tracking server, or on `mlflow ui` over the
    project's SQLite store (default port 5000)."""
    from mlflow import MlflowClient

    from imdb_mlops.registry.tracking import tracking_uri

    uri = tracking_uri(root)
    experiment = MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    text = f"MLflow run {run_id[:8]}"
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
    else:  # a store the CLI opens itself: the page is there once `mlflow ui` serves it
        base = "http://127.0.0.1:5000"
        text += " (start `mlflow ui --backend-store-uri sqlite:///mlflow.db` to open it)"
    return f"{base}/#/experiments/{experiment}/runs/{run_id}", text


def notify_failure(flow_: Any, run: Any, state: Any) -> None:
    """POST a JSON message to ``orchestration.failure_webhook`` (or $IMDB_MLOPS_FAILURE_WEBHOOK)."""
    import os

    import requests

    project_dir = Path(run.parameters.get("project_dir", ".")) if run.parameters else Path(".")
    url = os.environ.get("IMDB_MLOPS_FAILURE_WEBHOOK")
    if not url:
        try:
            url = load_params(project_dir / "params.yaml").orchestration.failure_webhook
        except Exception:
            url = None
    if not url:
        return
    message = {
        "flow": flow_.name,
        "flow_run": run.name,
        "flow_run_id": str(run.id),
        "state": state.name,
        "message": state.message,
    }
    try:
        requests.post(url, json=message, timeout=10)
    except requests.RequestException as exc:
        print(f"failure webhook {url} not reached: {exc}", file=sys.stderr)


@flow(name="imdb-training", on_failure=[notify_failure], validate_parameters=True)
def training_flow(
    overrides: dict[str, Any] | None = None,
    profiles: list[str] | None = None,
    project_dir: str = ".",
) -> dict[str, Any]:
    """Reproduce the DVC pipeline stage by stage; return the stages, overrides, version and gate."""
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    applied, planned = resolve_overrides(root, overrides or {}, profiles or [])  # errors before any write
    stages, ancestors = stage_graph(root)
    check_stage_settings(planned, stages)
    write_overrides(root / "params.yaml", applied)
    if applied:
        logger.info("params overridden: %s", json.dumps(applied, default=str))
    params = load_params(root / "params.yaml")
    changed = changed_stages(root)
    results: list[StageResult] = []
    for stage in stages:
        ran = {r.stage for r in results if r.ran}
        if needs_dvc(stage, changed, ancestors[stage], ran):
            results.append(reproduce_stage.with_options(**stage_settings(params, stage))(stage, str(root)))
        else:
            logger.info("stage %s up to date (dvc status): skipped", stage)
            results.append(StageResult(stage, ran=False, seconds=0.0))
    run_id = tag_training_run(root, applied, str(flow_run.id) if flow_run.id else None)
    markdown = summary_markdown(root, results, applied, run_id)
    create_markdown_artifact(key="imdb-training-summary", markdown=markdown, description="Stages, metrics, registry")
    if run_id:
        link, text = mlflow_run_link(root, run_id)
        create_link_artifact(key="imdb-training-mlflow-run", link=link, link_text=text, description="The MLflow run")
    registered = read_json(root / "reports" / "register.json")
    generation = read_json(root / "reports" / "generation.json")
    return {
        "stages": summary(results),
        "overrides": applied,
        "mlflow_run_id": run_id,
        "version": registered.get("version"),
        "gate": registered.get("gate"),
        "generator_version": generation.get("version"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the training flow once, locally.")
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE", help="param override")
    parser.add_argument("--profile", action="append", default=[], help="profiles/NAME.yaml overlay")
    parser.add_argument("--project-dir", default=".")
    args = parser.parse_args(argv)
    try:
        overrides = parse_assignments(args.set, "--set")
    except ParamsError as exc:
        parser.error(str(exc))
    result = training_flow(overrides=overrides, profiles=args.profile, project_dir=args.project_dir)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

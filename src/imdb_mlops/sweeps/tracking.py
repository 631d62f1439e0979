"""The sweep in MLflow: one parent run per study (found again by every process that joins it), each
trial's train run nested under it as a child, marked completed, pruned or failed with its DVC
experiment, and the study's pictures on the parent at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_mlops.config import SweepConfig, TrackingConfig
from imdb_mlops.registry.tracking import experiment_tags, git_commit, setup_mlflow

PARENT_ATTR = "mlflow_parent_run_id"


def parent_run(study: Any, study_name: str, cfg: SweepConfig, tracking: TrackingConfig, kind: str) -> str:
    """The study's parent run: the one a process before this one started (its id is a study
    attribute), else a new one. Call it under the study's claim lock."""
    from mlflow import MlflowClient

    experiment_id = setup_mlflow(tracking)
    client = MlflowClient()
    known = study.user_attrs.get(PARENT_ATTR)
    if known:
        return known
    run = client.create_run(
        experiment_id,
        run_name=f"sweep {study_name}",
        tags={
            **git_commit(),
            **experiment_tags(),
            "sweep.study": study_name,
            "sweep.role": "parent",
            "sweep.storage": kind,
        },
    )
    for key, value in {
        "sweep.trials": cfg.trials,
        "sweep.objective": cfg.objective,
        "sweep.direction": cfg.direction,
        "sweep.sampler": cfg.sampler,
        "sweep.pruner": cfg.pruner.kind,
        "sweep.stage": cfg.stage,
        **{f"sweep.space.{k}": v.model_dump_json(exclude_none=True) for k, v in cfg.space.items()},
    }.items():
        client.log_param(run.info.run_id, key, value)
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def child_run_id(client: Any, parent_id: str, study_name: str, number: int) -> str | None:
    experiment_id = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`sweep.study` = '{study_name}' and tags.`sweep.trial` = '{number}'",
        max_results=5,
    )
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return trials[0].info.run_id if trials else None


def mark_child(parent_id: str, study_name: str, outcome: Any, objective: str) -> str | None:
    """Tag the trial's child run with its end (and log the objective where the trial has one);
    a trial that failed before training leaves a child run of its own."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = child_run_id(client, parent_id, study_name, outcome.number)
    if run_id is None:  # failed before the train stage opened its run: a run of its own says so
        experiment_id = client.get_run(parent_id).info.experiment_id
        run_id = client.create_run(
            experiment_id,
            run_name=outcome.experiment,
            tags={"mlflow.parentRunId": parent_id, "sweep.study": study_name, "sweep.trial": str(outcome.number)},
        ).info.run_id
        for key, value in outcome.params.items():
            client.log_param(run_id, key, value)
        client.set_terminated(run_id, status="FAILED")
    client.set_tag(run_id, "sweep.state", outcome.state)
    client.set_tag(run_id, "sweep.dvc_experiment", outcome.experiment)
    if outcome.value is not None:
        client.log_metric(run_id, f"sweep_objective_val_{objective}", outcome.value)
    return run_id


def log_study_figures(parent_id: str, folder: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for png in sorted(folder.glob("*.png")):
        client.log_artifact(parent_id, str(png), "figures/sweep")


def close_parent(parent_id: str, best: Any | None, objective: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    if best is not None:
        client.log_metric(parent_id, f"best_val_{objective}", best.value)
        client.set_tag(parent_id, "sweep.best_trial", str(best.number))
        client.set_tag(parent_id, "sweep.best_dvc_experiment", best.user_attrs.get("dvc_experiment", ""))
    client.set_terminated(parent_id, status="FINISHED")

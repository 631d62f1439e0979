"""`imdb-mlops sweep` on the tiny pipeline: Optuna trials as DVC experiments with pruning, MLflow
parent and child runs, the best trial applied; and two processes sharing one study on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import TINY_PIPELINE_PARAMS, cli_env, make_project_copy, run, run_cli, set_params, write_hub_layout

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="stores")]  # one worker: PostgreSQL, parallel trials


def sweep_project(tmp_path: Path, model: Path, **sweep: object) -> Path:
    """The tiny pipeline with three evaluations per trial and a sweep over the learning rate."""
    project = make_project_copy(tmp_path)
    settings = {
        **TINY_PIPELINE_PARAMS,
        "data.source": str(write_hub_layout(tmp_path / "imdb", 160, 60)),
        "model.name": str(model),
        "train.max_steps": 12,
        "train.eval_steps": 4,
        "train.early_stopping_patience": 0,
    }
    set_params(project, **settings)
    tree = yaml.safe_load((project / "params.yaml").read_text())
    tree["sweep"].update(sweep)
    (project / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    run(["git", "commit", "-qam", "tiny sweep params"], project)
    return project


def exp_show(project: Path) -> dict[str, dict]:
    """``dvc exp show --json``: experiment name -> its params and metrics files."""
    out = run(["dvc", "exp", "show", "--json"], project).stdout
    found = {}
    for baseline in json.loads(out):
        for exp in baseline.get("experiments") or []:  # the workspace has None
            revs = exp.get("revs") or []
            if revs and revs[0].get("name"):
                data = revs[0]["data"]
                found[revs[0]["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": {k: v["data"] for k, v in data["metrics"].items() if "data" in v},  # ran
                }
    return found


def test_a_four_trial_sweep_with_two_jobs_prunes_tracks_every_trial_and_applies_the_best(
    tmp_path, tiny_distilbert_classifier
):
    from mlflow import MlflowClient

    project = sweep_project(
        tmp_path,
        tiny_distilbert_classifier,
        trials=4,
        jobs=2,
        stage="train",  # what pruning needs; the evaluate stage's part is shown by the real-data benchmark
        sampler="random",
        seed=154,  # draws 0.032, 0.073, 0.11, 0.82: two sane rates finish first, the absurd last one falls behind
        pruner={"kind": "median", "startup_trials": 1, "warmup_evaluations": 0, "min_resource": 1,
                "reduction_factor": 3},
        # deliberately absurd learning rates in the range: those trials fall behind and are pruned
        space={"train.learning_rate": {"type": "log_float", "low": 1e-3, "high": 0.9}},
    )  # fmt: skip
    store = f"sqlite:///{project / 'mlflow.db'}"
    proc = run_cli("sweep", cwd=project, MLFLOW_TRACKING_URI=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best trials by validation accuracy" in proc.stdout
    # ingest and tokenize are the same for every trial: computed by the first, the run-cache's for the rest
    logs = [p.read_text() for p in sorted((project / ".sweeps" / "imdb-sweep" / "logs").glob("*.log"))]
    assert len(logs) == 4 and sum("Running stage 'tokenize'" in log for log in logs) == 1, logs

    import optuna

    study = optuna.load_study(
        study_name="imdb-sweep",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(project / ".sweeps" / "imdb-sweep.journal"))
        ),
    )
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    assert len(trials) == 4 and "FAIL" not in states, states
    assert states.count("PRUNED") >= 1, [(t.params, t.intermediate_values, t.datetime_start) for t in trials]

    # every trial is a DVC experiment with its params and metrics, pruned ones marked so
    experiments = exp_show(project)
    client = MlflowClient(tracking_uri=store)
    parent = client.search_runs(
        [client.get_experiment_by_name("imdb-sentiment").experiment_id], "tags.`sweep.role` = 'parent'"
    )
    assert len(parent) == 1
    parent = parent[0]
    assert {"optimization_history.png", "parallel_coordinate.png"} <= {
        Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "figures/sweep")
    }
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4
    for trial in trials:
        name = trial.user_attrs["dvc_experiment"]
        exp = experiments[name]
        assert exp["params"]["train"]["learning_rate"] == pytest.approx(trial.params["train.learning_rate"])
        train_metrics = exp["metrics"]["reports/train_metrics.json"]
        assert train_metrics["sweep"]["pruned"] == (trial.state.name == "PRUNED")
        child = next(c for c in children if c.data.tags["sweep.trial"] == str(trial.number))
        assert child.data.tags["sweep.state"] == ("pruned" if trial.state.name == "PRUNED" else "completed")
        assert child.data.tags["dvc.exp.name"] == name
        assert child.data.metrics["final_val_accuracy"] == pytest.approx(train_metrics["validation"]["accuracy"])
        if trial.state.name == "PRUNED":
            # stopped at the evaluation that pruned it (every 4 steps)
            assert train_metrics["global_step"] == 4 * train_metrics["sweep"]["evaluations"]

    # the best trial applied to the workspace: its params in params.yaml, ready for dvc repro
    proc = run_cli("sweep", "--apply-best", cwd=project, MLFLOW_TRACKING_URI=store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    applied = yaml.safe_load((project / "params.yaml").read_text())
    assert applied["train"]["learning_rate"] == pytest.approx(study.best_trial.params["train.learning_rate"])


def test_two_processes_share_one_postgresql_study_without_running_a_trial_twice(
    tmp_path, postgres, tiny_distilbert_classifier
):
    database_uri, _ = postgres
    project = sweep_project(
        tmp_path,
        tiny_distilbert_classifier,
        trials=2,  # two processes, one trial each (each claims one before the other's ends): a shared study
        jobs=1,
        pruner={"kind": "none", "startup_trials": 2, "warmup_evaluations": 0, "min_resource": 1, "reduction_factor": 3},
        stage="train",
        space={"train.learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
    )
    set_params(project, **{"train.max_steps": 4, "train.eval_steps": 4})
    run(["git", "commit", "-qam", "shorter trials"], project)
    env = {**cli_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
           "IMDB_MLOPS_SWEEP_STORAGE": database_uri}  # fmt: skip
    command = ["imdb-mlops", "sweep", "--study", "shared"]
    machines = [subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]  # fmt: skip
    results = [machine.communicate(timeout=1500) for machine in machines]
    for machine, (_, err) in zip(machines, results, strict=True):
        assert machine.returncode == 0, err[-3000:]

    import optuna

    study = optuna.load_study(
        study_name="shared", storage=database_uri.replace("postgresql://", "postgresql+psycopg://")
    )
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    names = [t.user_attrs["dvc_experiment"] for t in trials]
    assert len(set(names)) == 2
    assert len({t.params["train.learning_rate"] for t in trials}) == 2  # no value drawn twice
    # both processes ran trials, and each trial once
    ran = [[line for line in err.splitlines() if " completed in " in line] for _, err in results]
    assert sum(map(len, ran)) == 2 and all(ran), ran
    assert set(exp_show(project)) >= set(names)

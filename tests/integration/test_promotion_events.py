"""Promotion as an event, end to end on real servers: a real ``mlflow server`` (SQLite store) sends
its registry webhooks to the real receiver (``imdb-mlops webhooks serve``), which records a champion
set through MLflow's REST API (what the UI calls) and emits a Prefect event; the
``rescore-on-champion`` deployment of ``prefect.yaml``, deployed to a real Prefect server and run by
a real process worker, re-scores the latest batch and publishes its comparison artifact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import requests

from helpers import cli_env, make_reviews, run, run_cli
from servers import free_port, start_mlflow_server, stop_server, wait_for, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="flow")]
MODEL = "imdb-sentiment"
SECRET = "test-secret-3f1c"


def history(project, env):
    proc = run_cli("registry", "history", "--json", cwd=project, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def servers(flow_project, tmp_path):
    """A copy of the flow project's registry behind a real MLflow server, with a second version of
    the champion's model; the receiver; the Prefect API of the session (the test harness)."""
    from cryptography.fernet import Fernet
    from mlflow import MlflowClient, register_model, set_tracking_uri
    from prefect.settings import PREFECT_API_URL

    project, _ = flow_project
    shutil.copy(project / "mlflow.db", tmp_path / "server.db")  # artifacts stay where the flow logged them
    mlflow_port, receiver_port = free_port(), free_port()
    server_env = {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    server = start_mlflow_server(mlflow_port, f"sqlite:///{tmp_path / 'server.db'}", tmp_path, env=server_env)
    uri = f"http://127.0.0.1:{mlflow_port}"
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "IMDB_MLOPS_WEBHOOK_SECRET": SECRET,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "IMDB_MLOPS_LOCK_DIR": str(tmp_path / "locks"),
    }
    log = (tmp_path / "receiver.log").open("w")
    receiver = None
    try:
        wait_for(f"{uri}/health", server)
        receiver = subprocess.Popen(
            [sys.executable, "-m", "imdb_mlops", "webhooks", "serve", "--port", str(receiver_port)],
            cwd=project, env=cli_env(**env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        set_tracking_uri(uri)
        first = client.get_model_version(MODEL, "1")
        second = register_model(first.source, MODEL)  # the same logged model again: version 2
        wait_until(
            lambda: client.get_model_version(MODEL, second.version).status == "READY",
            30,
            "version 2 READY",
            every_s=0.5,
        )
        wait_for(f"http://127.0.0.1:{receiver_port}/health", receiver)
        yield {"project": project, "env": env, "client": client, "receiver_port": receiver_port, "tmp": tmp_path}
    finally:
        for process in (p for p in (receiver, server) if p is not None):
            stop_server(process)
        log.close()


def deploy_rescoring(project, env, tmp_path):
    """``prefect deploy`` of the rescore-on-champion deployment, and a process worker for it."""
    env = {**env, "PWD": str(project)}  # prefect.yaml's {{ $PWD }}, as in a shell at the project root
    run(["prefect", "work-pool", "create", "imdb-process", "--type", "process", "--overwrite"], project, **env)
    run(["prefect", "--no-prompt", "deploy", "--name", "rescore-on-champion"], project, **env)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(shutil.which("prefect", path=cli_env()["PATH"])), "worker", "start", "--pool", "imdb-process"],
        cwd=project, env=cli_env(**env, PREFECT_WORKER_QUERY_SECONDS="1"), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return worker, log


def flow_runs_of(deployment_name: str):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
        )


def test_a_champion_set_through_the_rest_api_reaches_history_rollback_and_a_rescoring_flow(servers):
    from prefect.artifacts import Artifact

    project, env, client = servers["project"], servers["env"], servers["client"]
    url = f"http://127.0.0.1:{servers['receiver_port']}/mlflow-webhook"
    registered = run_cli("webhooks", "register", "--url", url, cwd=project, **env)
    assert registered.returncode == 0, registered.stderr
    assert "created" in registered.stdout and "test delivery answered 200" in registered.stdout
    before = history(project, env)
    assert [e["source"] for e in before] == ["register-stage"] and before[-1]["version"] == "1"

    scores = project / "scores" / "20261201T040000Z"
    scores.mkdir(parents=True)
    make_reviews(40, seed=11)[["text"]].to_parquet(scores / "predictions.parquet")
    worker, worker_log = deploy_rescoring(project, env, servers["tmp"])
    try:
        # what the UI's alias editor sends
        answer = requests.post(
            f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "champion", "version": "2"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        moved = wait_until(
            lambda: len(history(project, env)) == 2 and history(project, env), 10, "UI move in history", every_s=0.5
        )
        assert moved[-1] | {"at": None, "id": None, "delivery_id": None} == {
            "action": "set", "version": "2", "previous": "1", "source": "ui/rest", "at": None, "id": None,
            "delivery_id": None, "reason": "alias set in the MLflow UI or REST API", "prefect_event": "emitted",
        }  # fmt: skip
        assert moved[-1]["delivery_id"]

        rolled = run_cli("registry", "rollback", cwd=project, **env)
        assert rolled.returncode == 0, rolled.stderr
        assert "champion 2 -> 1 (rolled back)" in rolled.stdout
        assert str(client.get_registered_model(MODEL).aliases["champion"]) == "1"
        after = wait_until(
            lambda: (h := history(project, env))[-1].get("prefect_event") == "emitted" and h,
            10,
            "rollback announced",
            every_s=0.5,
        )
        assert [(e["source"], e["version"]) for e in after] == [
            ("register-stage", "1"),
            ("ui/rest", "2"),
            ("rollback", "1"),
        ]

        def completed_rescoring():
            runs = [r for r in flow_runs_of("rescore-on-champion") if r.parameters.get("version") == "2"]
            return runs if runs and runs[0].state.is_final() else None

        runs = wait_until(completed_rescoring, 240, "the triggered re-scoring flow run", every_s=0.5)
        assert runs[0].state.is_completed(), runs[0].state
        assert runs[0].parameters == {"version": "2", "previous_version": "1", "project_dir": str(project)}
        artifact = Artifact.get("imdb-champion-comparison")
        rows = {row["what"]: row["value"] for row in json.loads(artifact.data)}
        assert rows["reviews"] == 40 and rows["agreement"] == 1.0  # version 2 is version 1's model
        comparisons = list((project / "rescores").glob("*-v1-v2/comparison.json"))
        assert len(comparisons) == 1
        assert json.loads(comparisons[0].read_text())["new_version"] == "2"
    finally:
        stop_server(worker)
        worker_log.close()
        shutil.rmtree(project / "scores", ignore_errors=True)
        shutil.rmtree(project / "rescores", ignore_errors=True)
    receiver_log = (servers["tmp"] / "receiver.log").read_text()
    assert "ignored: event for another registered model 'example_model'" in receiver_log  # MLflow's test delivery
    assert "recorded: champion 1 -> 2 (ui/rest); Prefect event emitted" in receiver_log

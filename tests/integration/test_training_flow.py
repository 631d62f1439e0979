"""The Prefect training flow (pipelines/training_flow.py) against a real Prefect API, on a fresh
git + DVC copy of the repository with a tiny DistilBERT: full run, no-op run, retry, failure,
overrides, bad input, and a deployment run on the session's Prefect server by a real process worker."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import REPO_ROOT, cli_env, run
from imdb_mlops.common.errors import ParamsError
from imdb_mlops.orchestration.dvc_stages import needs_dvc, stage_error, stage_order, upstream
from servers import free_port, server_output, start_logged_server, start_mlflow_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="flow")]
STAGES = ["ingest", "tokenize", "train", "evaluate", "export", "generate", "register"]


@pytest.fixture(autouse=True)
def project_store(request, monkeypatch):
    """Flow runs use the project's own MLflow store unless a test points elsewhere."""
    if "flow_project" in request.fixturenames:
        project, _ = request.getfixturevalue("flow_project")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")


def test_stage_order_comes_from_dvc_yaml():
    assert stage_order(REPO_ROOT) == STAGES
    ancestors = upstream(REPO_ROOT)
    assert ancestors["ingest"] == set() and ancestors["register"] >= {"ingest", "train", "export"}
    assert not needs_dvc("evaluate", set(), ancestors["evaluate"], set())
    assert needs_dvc("evaluate", {"train"}, ancestors["evaluate"], set())
    assert needs_dvc("evaluate", set(), ancestors["evaluate"], {"tokenize"})
    assert needs_dvc("register", {"register"}, ancestors["register"], set())


def test_full_run_reproduces_every_stage_and_leaves_dvc_up_to_date(flow_project):
    project, result = flow_project
    assert [s["stage"] for s in result["stages"]] == STAGES and all(s["ran"] for s in result["stages"])
    assert result["overrides"] == {"train.learning_rate": 0.002}
    assert result["version"] == 1 and result["gate"]["action"] == "promoted"
    # dvc.lock is what `dvc repro` would write: dvc finds nothing to do.
    assert "up to date" in run(["dvc", "status"], project).stdout
    proc = run(["dvc", "repro"], project)
    assert "Running stage" not in proc.stdout
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert list(lock["stages"]) == STAGES
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["learning_rate"] == 0.002
    # The override is recorded: params.yaml (as `dvc exp run -S` leaves it), the MLflow run, the artifact.
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["learning_rate"] == 0.002
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").get_run(result["mlflow_run_id"]).data.tags
    assert json.loads(tags["flow.overrides"]) == {"train.learning_rate": 0.002} and tags["prefect.flow_run_id"]
    from prefect.artifacts import Artifact

    summary = Artifact.get("imdb-training-summary").data
    assert "| train | ran |" in summary and "imdb-sentiment** version **1**" in summary
    assert result["mlflow_run_id"] in summary and "accuracy" in summary
    assert "imdb-review-generator** version **1**" in summary and "control accuracy" in summary
    link = Artifact.get("imdb-training-mlflow-run")
    assert link.data.startswith("[MLflow run ")  # a link artifact is stored as markdown
    assert (
        f"http://127.0.0.1:5000/#/experiments/{tags_experiment(project, result)}/runs/{result['mlflow_run_id']}"
        in link.data
    )


def tags_experiment(project, result) -> str:
    from mlflow import MlflowClient

    return (
        MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
        .get_run(result["mlflow_run_id"])
        .info.experiment_id
    )


def test_second_run_skips_every_stage(flow_project):
    from pipelines.training_flow import training_flow

    project, first = flow_project
    result = training_flow(project_dir=str(project))
    assert [s["ran"] for s in result["stages"]] == [False] * len(STAGES)
    assert result["version"] == first["version"] and result["mlflow_run_id"] == first["mlflow_run_id"]


def test_a_stage_that_fails_once_succeeds_on_retry(flow_project, monkeypatch):
    """The tracking server is down when register starts and comes up before a retry."""
    from prefect.client.orchestration import get_client

    from pipelines.training_flow import training_flow

    project, _ = flow_project
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started: dict[str, subprocess.Popen] = {}

    def bring_server_up_after_first_failure() -> None:
        deadline = time.monotonic() + 240
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                runs = client.read_task_runs()
                if any(r.name == "dvc repro register" and r.state and r.state.name == "AwaitingRetry" for r in runs):
                    break
                time.sleep(0.5)
        started["server"] = start_mlflow_server(port, f"sqlite:///{project / 'mlflow.db'}", project, quiet=True)

    helper = threading.Thread(target=bring_server_up_after_first_failure, daemon=True)
    helper.start()
    try:
        result = training_flow(
            overrides={
                "registry.min_improvement": 0.003,
                "orchestration.retries": 3,  # 30 s in all for the server to come up on a busy machine
                "orchestration.retry_delay_s": 10,
            },
            project_dir=str(project),
        )
    finally:
        helper.join(timeout=60)
        if "server" in started:
            stop_server(started["server"])
    ran = {s["stage"]: s["ran"] for s in result["stages"]}
    assert ran == {**{s: False for s in STAGES}, "register": True}
    assert result["gate"] == {"action": "already_registered"} and result["version"] == 1
    with get_client(sync_client=True) as client:
        register_runs = [r for r in client.read_task_runs() if r.name == "dvc repro register"]
        assert max(r.run_count for r in register_runs) >= 2  # failed, then passed on a retry (the 2nd or later)


def test_a_stage_that_fails_for_good_fails_the_flow_with_its_message(flow_project):
    from pipelines.training_flow import training_flow

    project, _ = flow_project
    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = (project / "params.yaml").read_text()
    try:
        state = training_flow(
            overrides={
                "registry.variant": "fp16",
                "orchestration.retries": 0,
                "orchestration.failure_webhook": f"http://127.0.0.1:{server.server_port}/hook",
            },
            project_dir=str(project),
            return_state=True,
        )
    finally:
        server.shutdown()
        (project / "params.yaml").write_text(before)
    assert state.is_failed()
    with pytest.raises(
        Exception, match=r"stage 'register' failed: registry.variant: 'fp16' was not shipped by the export stage"
    ):
        state.result()
    assert received and received[0]["state"] == "Failed" and received[0]["flow"] == "imdb-training"
    assert "registry.variant: 'fp16' was not shipped" in received[0]["message"]


def test_a_stage_past_its_timeout_is_stopped_with_its_processes(flow_project):
    from pipelines.training_flow import training_flow

    project, _ = flow_project
    before = (project / "params.yaml").read_text()
    try:
        state = training_flow(
            overrides={
                "registry.min_improvement": 0.005,
                "orchestration.retries": 0,
                "orchestration.stage_timeout_s": {"register": 2},
            },
            project_dir=str(project),
            return_state=True,
        )
    finally:
        (project / "params.yaml").write_text(before)
    assert state.is_failed()
    with pytest.raises(Exception, match="timed out after 2"):
        state.result()
    # This project's register processes only (another test worker may be registering its own).
    deadline = time.monotonic() + 3  # a killed process is gone by then; a finished register would take longer
    while (leftovers := stage_processes("imdb-mlops register", project)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers == [], leftovers


def stage_processes(command: str, project: Path) -> list[str]:
    """Running processes of ``command`` whose working directory is ``project``."""
    pids = subprocess.run(["pgrep", "-f", command], capture_output=True, text=True).stdout.split()
    mine = []
    for pid in pids:
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == project.resolve():
                mine.append(pid)
        except OSError:  # ended meanwhile
            continue
    return mine


def test_bad_overrides_and_unknown_flow_parameters_change_nothing(flow_project):
    from pipelines.training_flow import training_flow

    project, _ = flow_project
    before = (project / "params.yaml").read_text()
    with pytest.raises(ParamsError, match=r"train.learnin_rate: unknown key \(did you mean 'train.learning_rate'\?\)"):
        training_flow(overrides={"train.learnin_rate": 1e-4}, project_dir=str(project))
    with pytest.raises(ParamsError, match=r"train.learning_rate: must be > 0"):
        training_flow(overrides={"train.learning_rate": -1}, project_dir=str(project))
    with pytest.raises(ParamsError, match=r"orchestration.stage_retries: unknown stage trian"):
        training_flow(overrides={"orchestration.stage_retries": {"trian": 2}}, project_dir=str(project))
    with pytest.raises(ParamsError, match="profiles: no profile 'fast'"):
        training_flow(profiles=["fast"], project_dir=str(project))
    with pytest.raises(TypeError, match="learning_rate"):
        training_flow(learning_rate=1e-4, project_dir=str(project))
    assert (project / "params.yaml").read_text() == before


def test_stage_error_is_the_stages_own_line():
    lines = [
        "Running stage 'ingest':",
        "> imdb-mlops ingest",
        "error: data.source: '/x' does not exist",
        "ERROR: failed to reproduce 'ingest': failed to run: imdb-mlops ingest, exited with 1",
    ]
    assert stage_error(lines, 1) == "data.source: '/x' does not exist"
    assert stage_error(lines[-1:], 1) == "failed to reproduce 'ingest': failed to run: imdb-mlops ingest, exited with 1"
    assert stage_error([], 3) == "exited with 3"


def test_deployment_runs_on_a_real_server_and_process_worker(flow_project, tmp_path):
    """Deployed with its weekly cron to the session's Prefect server (a real one on loopback, started
    by the test harness) and run there by a real process worker."""
    from prefect.settings import PREFECT_API_URL

    project, _ = flow_project
    api = PREFECT_API_URL.value()
    env = cli_env(
        PREFECT_API_URL=api,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        DO_NOT_TRACK="1",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    prefect = str(Path(sys.executable).parent / "prefect")
    worker = None
    try:
        run(
            [prefect, "work-pool", "create", "test-pool", "--type", "process"],
            tmp_path,
            **{k: env[k] for k in ("PREFECT_API_URL", "PREFECT_HOME")},
        )
        script = (
            "from pipelines.training_flow import training_flow\n"
            f"deployment_id = training_flow.from_source(source={str(project)!r}, "
            "entrypoint='pipelines/training_flow.py:training_flow').deploy("
            f"name='weekly-training', work_pool_name='test-pool', cron='0 3 * * 1', parameters={{'project_dir': {str(project)!r}}})\n"
            "from prefect.deployments import run_deployment\n"
            "flow_run = run_deployment('imdb-training/weekly-training', timeout=0)\n"
            "print(flow_run.id)\n"
        )
        created = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert created.returncode == 0, created.stderr
        flow_run_id = created.stdout.strip().splitlines()[-1]
        # the flow run's output goes to the worker's: a log file, never a pipe nobody reads
        worker = start_logged_server(
            [prefect, "worker", "start", "--pool", "test-pool", "--type", "process"],
            project,
            env,
            tmp_path / "worker.log",
        )
        deadline, state = time.monotonic() + 300, None
        while time.monotonic() < deadline:
            state = requests.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(0.5)
        assert state == "COMPLETED", f"{state}: {server_output(worker)}"
        deployment = requests.get(f"{api}/deployments/name/imdb-training/weekly-training", timeout=10).json()
        assert deployment["schedules"][0]["schedule"]["cron"] == "0 3 * * 1"
    finally:
        if worker is not None:
            stop_server(worker)


def test_prefect_yaml_declares_weekly_training_and_daily_scoring():
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert deployments["weekly-training"]["entrypoint"] == "pipelines/training_flow.py:training_flow"
    assert deployments["weekly-training"]["schedules"][0]["cron"] == "0 3 * * 1"
    assert deployments["daily-scoring"]["entrypoint"] == "pipelines/scoring_flow.py:scoring_flow"
    assert deployments["daily-scoring"]["schedules"][0]["cron"] == "0 4 * * *"
    assert os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false") == "false"

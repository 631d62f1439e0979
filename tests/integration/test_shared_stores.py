"""Shared stores a team uses: an MLflow server on a real PostgreSQL database, and a DVC remote
switched by configuration alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import TINY_PIPELINE_PARAMS, cli_env, make_project_copy, run, run_cli, set_params, write_hub_layout
from servers import free_port, server_output, start_logged_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="stores")]


@pytest.fixture(scope="module")
def mlflow_on_postgres(postgres, tmp_path_factory):
    """``mlflow server`` with the PostgreSQL backend and a local artifact root, on loopback."""
    database_uri, _ = postgres
    artifacts = tmp_path_factory.mktemp("artifacts")
    port = free_port()
    server = start_logged_server(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", database_uri, "--artifacts-destination", str(artifacts), "--workers", "1"],
        artifacts.parent, cli_env(), artifacts.parent / f"mlflow-server-{port}.log",
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(1)
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited: {server_output(server)}")
    yield uri
    stop_server(server)


def test_train_register_promote_against_mlflow_on_postgres(
    tmp_path, postgres, mlflow_on_postgres, tiny_distilbert_classifier
):
    uri = mlflow_on_postgres
    project = make_project_copy(tmp_path, mlflow_store=False)  # the stores are PostgreSQL's
    source = write_hub_layout(tmp_path / "imdb", 120, 60)
    set_params(project, **{**TINY_PIPELINE_PARAMS, "train.max_steps": 10, "train.eval_steps": 5, "export.gate_samples": 100,
                           "data.source": str(source), "model.name": str(tiny_distilbert_classifier)})  # fmt: skip
    run(["git", "commit", "-qam", "tiny params"], project)
    proc = run(["dvc", "repro", "register"], project, MLFLOW_TRACKING_URI=uri)  # ingest -> ... -> register
    assert "Running stage 'train'" in proc.stdout and "Running stage 'register'" in proc.stdout
    promoted = run_cli(
        "registry", "promote", "1", "--reason", "reviewed by the team", cwd=project, MLFLOW_TRACKING_URI=uri
    )
    assert promoted.returncode == 0, promoted.stderr[-2000:]

    api = f"{uri}/api/2.0/mlflow"
    champion = requests.get(
        f"{api}/registered-models/alias", params={"name": "imdb-sentiment", "alias": "champion"}, timeout=10
    ).json()
    version = champion["model_version"]
    assert version["version"] == "1"
    tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert tags["promotion_reason"] == "reviewed by the team" and tags["params_digest"]
    run_info = requests.get(f"{api}/runs/get", params={"run_id": tags["training_run_id"]}, timeout=10).json()["run"]
    metrics = {m["key"]: m["value"] for m in run_info["data"]["metrics"]}
    assert "test_accuracy" in metrics and "variant_fp32_agreement" in metrics
    # the artifacts went through the server to its local artifact root, and load back from there
    listed = requests.get(
        f"{api}/artifacts/list", params={"run_id": tags["training_run_id"], "path": "pytorch_model"}, timeout=10
    ).json()
    assert "pytorch_model/model.safetensors" in {f["path"] for f in listed.get("files", [])}
    predicted = run_cli("predict", "a wonderful film", "--json", cwd=project, MLFLOW_TRACKING_URI=uri)
    assert predicted.returncode == 0 and '"label"' in predicted.stdout
    # and the registry rows are in PostgreSQL, not in a local file
    bindir, port, as_owner = postgres[1]
    rows = subprocess.run([*as_owner, str(bindir / "psql") if (bindir / "psql").exists() else "psql", "-h", "127.0.0.1",
                           "-p", str(port), "-U", "mlflow", "-d", "mlflow", "-tAc",
                           "select name, version from model_versions"], capture_output=True, text=True, check=True)  # fmt: skip
    assert rows.stdout.split() == ["imdb-sentiment|1"]
    assert not (project / "mlflow.db").exists()

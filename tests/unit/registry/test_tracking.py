import time
from pathlib import Path

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.registry.tracking import dvc_lock_hashes, ensure_tracking_reachable, read_run_file, tracking_uri


def test_default_store_is_sqlite_in_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_unreachable_server_fails_within_the_timeout():
    started = time.monotonic()
    with pytest.raises(PipelineError, match="tracking server http://127.0.0.1:9 is unreachable"):
        ensure_tracking_reachable("http://127.0.0.1:9", timeout_s=2)
    assert time.monotonic() - started < 10


def test_dvc_lock_hashes_name_each_output(tmp_path):
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  ingest:\n    outs:\n    - path: data/raw\n      md5: abc.dir\n"
        "  tokenize:\n    outs:\n    - path: data/tokenized\n      md5: def.dir\n"
    )
    assert dvc_lock_hashes(project_dir=tmp_path) == {"dvc.data/raw.md5": "abc.dir", "dvc.data/tokenized.md5": "def.dir"}
    assert dvc_lock_hashes(project_dir=tmp_path / "nowhere") == {}


def test_run_file_errors(tmp_path):
    with pytest.raises(PipelineError, match="missing; run the train stage first"):
        read_run_file(tmp_path / "train_run.json")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(PipelineError, match="not a run file"):
        read_run_file(Path(tmp_path / "bad.json"))


def test_experiment_tags_name_the_dvc_experiment_and_tell_params_from_code_changes(tmp_path, monkeypatch):
    import subprocess

    from imdb_mlops.registry.tracking import experiment_tags

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@localhost")
    git("config", "user.name", "t")
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-lark")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abcdef1234")
    (tmp_path / "params.yaml").write_text("seed: 2\n")  # what `dvc exp run -S` changes: recorded in full
    tags = experiment_tags(tmp_path)
    assert tags == {
        "git.dirty_code": "false",
        "reproducible": "true",
        "dvc.exp.name": "lucky-lark",
        "dvc.exp.baseline": "abcdef1234",
        "dvc.exp.ref": "refs/exps/ab/cdef1234/lucky-lark",
    }
    (tmp_path / "train.py").write_text("x = 2\n")  # code the commit does not describe
    assert experiment_tags(tmp_path)["reproducible"] == "false"
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it either
    assert {k: experiment_tags(outside)[k] for k in ("git.dirty_code", "reproducible")} == {
        "git.dirty_code": "unknown",
        "reproducible": "false",
    }


def test_stage_outputs_kept_in_git_are_not_dirty_code(tmp_path):
    import subprocess

    from imdb_mlops.registry.tracking import experiment_tags

    for args in (["init", "-q"], ["config", "user.email", "t@l"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  ingest:\n    cmd: x\n    metrics:\n      - reports/data.json:\n          cache: false\n"
    )
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "data.json").write_text("{}")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=tmp_path, check=True)
    (tmp_path / "reports" / "data.json").write_text('{"rows": 3}')  # written by the run itself
    assert experiment_tags(tmp_path)["reproducible"] == "true"
    with (tmp_path / "dvc.yaml").open("a") as definition:  # the pipeline's definition is code
        definition.write("# changed\n")
    tags = experiment_tags(tmp_path)
    assert tags["reproducible"] == "false" and tags["git.dirty_code_files"] == "dvc.yaml"


def test_a_dataset_logged_by_two_runs_at_once_is_linked_on_the_second_try(tmp_path, monkeypatch):
    """MLflow checks for the dataset, then inserts it: a run that loses the race to a parallel
    sweep trial hits the unique key once, and its next try links the row the other one wrote."""
    import mlflow
    import pandas as pd

    from imdb_mlops.registry.tracking import log_dataset

    parquet = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["a fine film", "dull"], "label": [1, 0]}).to_parquet(parquet)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    real_log_input, calls = mlflow.log_input, []

    def racing_log_input(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the other trial inserted the row between MLflow's check and insert
            raise mlflow.exceptions.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.name")
        return real_log_input(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing_log_input)
    try:
        with mlflow.start_run() as run:
            log_dataset("stanfordnlp/imdb", parquet, "train", "training")
        inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
        assert len(calls) == 2 and [d.dataset.name for d in inputs] == ["imdb-train"]
        monkeypatch.setattr(mlflow, "log_input", lambda *a, **k: (_ for _ in ()).throw(
            mlflow.exceptions.MlflowException("some other failure")))  # fmt: skip
        with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException, match="some other failure"):
            log_dataset("stanfordnlp/imdb", parquet, "train", "training")
    finally:
        mlflow.set_tracking_uri(None)


def test_a_server_gone_mid_command_is_one_line_naming_it(monkeypatch):
    """A real MLflow request to a port nothing listens on, as after the server died mid-run."""
    import socket

    import typer
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from imdb_mlops.cli.common import handles_errors
    from imdb_mlops.registry.tracking import tracking_outage

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = MlflowClient(tracking_uri=uri)
    with pytest.raises(MlflowException) as caught:
        client.create_run("0")
    line = tracking_outage(caught.value)
    assert line is not None and line.startswith(f"MLflow tracking server {uri} stopped answering")
    assert tracking_outage(MlflowException("RESOURCE_DOES_NOT_EXIST: no run 'x'")) is None
    assert tracking_outage(ValueError("Connection refused")) is None  # not an MLflow request

    @handles_errors
    def command() -> None:
        client.create_run("0")

    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == 1

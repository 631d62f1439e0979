"""The model server of ``imdb-mlops serve``: MLflow's own scoring app (the same ``/invocations``,
``/ping``, ``/health``, ``/version`` and request formats as ``mlflow models serve``) for a
registered model, behind :class:`~imdb_mlops.serving.admission.AdmissionControl`, in uvicorn
worker processes under uvicorn's supervisor, which replaces a worker that dies (at once, even while
a health check waits on it: :mod:`~imdb_mlops.serving.supervisor`).

Each worker loads the model before it accepts a connection, so ``/ping`` is answered only by a
worker that can predict. It loads and predicts in threads niced by ``serving.prediction_nice``
(:mod:`~imdb_mlops.serving.priority`), so its event loop gets a core the moment it wakes. The first
worker to load measures which variant is fastest here (the classifier's probe); the others, and
every replacement of a dead worker, load that variant by name (:func:`load_as_chosen`): every worker
gives the same answers, and a replacement serves sooner.
``serving.workers`` unset: one worker per CPU as far as memory allows,
at least 2 where 2 fit (a lone worker has no supervisor: uvicorn runs one worker in-process).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from imdb_mlops.config import ServingConfig

SETTINGS_ENV = "IMDB_MLOPS_SERVE_SETTINGS"  # JSON handed to the workers: model, tracking URI, limits
SHARED_DIR_PREFIX = "imdb-mlops-serve-"  # + the server's pid: where its workers share the variant chosen
WORKER_MEMORY = 1536 * 1024**2  # a worker with the classifier loaded (all its shipped variants), at most


def create_app() -> Any:
    """The ASGI app of one worker (uvicorn calls this in each worker process)."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    from imdb_mlops.registry.versions import load_pyfunc
    from imdb_mlops.serving.admission import AdmissionControl
    from imdb_mlops.serving.priority import in_lowered_thread, lowered_calls
    from imdb_mlops.serving.request_checks import RefuseEmptyRequests

    settings = json.loads(os.environ[SETTINGS_ENV])
    limits = ServingConfig(**settings["limits"])
    mlflow.set_tracking_uri(settings["tracking_uri"])
    shared, uri = settings.get("shared_dir"), settings["model_uri"]
    # loaded in a lowered thread: the compute threads a runtime starts now inherit its priority
    model = in_lowered_thread(
        limits.prediction_nice, lambda: load_as_chosen(uri, Path(shared)) if shared else load_pyfunc(uri)
    )
    model.predict = lowered_calls(limits.prediction_nice, model.predict)  # MLflow's app calls it in its threads
    return AdmissionControl(RefuseEmptyRequests(scoring_server.init(model)), limits)


def load_as_chosen(model_uri: str, shared: Path) -> Any:
    """The model loaded as this server's first worker chose: the first to get here loads it with the
    variant choice (probe) and leaves the variant in ``shared``; later workers load that variant by name.
    A worker that dies while loading leaves no record: the next one chooses."""
    from filelock import FileLock

    from imdb_mlops.common.files import write_json
    from imdb_mlops.registry.predict import served_choice
    from imdb_mlops.registry.versions import load_pyfunc

    record = shared / "variant.json"
    with FileLock(shared / "variant.lock"):
        if not record.exists():
            model = load_pyfunc(model_uri)
            choice = served_choice(model)
            tmp = shared / f".variant.{os.getpid()}.tmp"
            write_json(tmp, {"variant": choice["variant"] if choice else None})  # None: a model that does not choose
            os.replace(tmp, record)
            return model
    variant = json.loads(record.read_text())["variant"]
    if variant:
        os.environ["IMDB_MLOPS_VARIANT"] = variant  # the classifier's by-name choice (this process only)
    return load_pyfunc(model_uri)


def prepare_shared_dir(server_pid: int) -> Path:
    """A new, private folder for the workers of the server ``server_pid``; the folders of servers no
    longer running (and one left by an earlier process with this pid) are removed first."""
    from imdb_mlops.common.files import process_alive

    temp = Path(tempfile.gettempdir())
    for old in temp.glob(f"{SHARED_DIR_PREFIX}*"):
        pid = old.name.removeprefix(SHARED_DIR_PREFIX)
        if pid.isdigit() and (int(pid) == server_pid or not process_alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    shared = temp / f"{SHARED_DIR_PREFIX}{server_pid}"
    shared.mkdir(mode=0o700)
    return shared


def available_memory() -> int:
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 2 * WORKER_MEMORY


def worker_count(requested: int | None, cpus: int, memory: int) -> int:
    """``requested``, else one per CPU that ``memory`` holds, at least 2 where 2 fit."""
    if requested:
        return requested
    fits = max(1, memory // WORKER_MEMORY)
    return max(min(cpus, fits), min(2, fits))


def threads_per_worker(requested: int | None, cpus: int, workers: int) -> int:
    """``requested``, else the cores shared among the workers, at least 1 each: two workers with
    a thread per core each would fight over the cores whenever both predict."""
    return requested or max(1, cpus // workers)


def worker_env(threads: int) -> dict[str, str]:
    """The thread settings of each worker: ONNX Runtime reads ours, PyTorch and BLAS the usual ones."""
    from imdb_mlops.modeling.runtimes import CPU_THREADS_ENV

    value = str(threads)
    return {CPU_THREADS_ENV: value, "OMP_NUM_THREADS": value, "MKL_NUM_THREADS": value}


def uvicorn_command(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imdb_mlops.serving.supervisor",  # uvicorn's command line; a dead worker is noticed at once
        "--factory",
        "imdb_mlops.serving.server:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        # a worker busy predicting still answers the supervisor's health check, but on a loaded
        # 2-core machine it may take longer than uvicorn's default 5 s
        "--timeout-worker-healthcheck",
        "30",
        "--timeout-graceful-shutdown",
        "10",
    ]


def serve_settings(model_uri: str, tracking_uri: str, limits: ServingConfig, shared_dir: Path | None = None) -> str:
    return json.dumps(
        {
            "model_uri": model_uri,
            "tracking_uri": tracking_uri,
            "limits": limits.model_dump(),
            "shared_dir": str(shared_dir) if shared_dir else None,
        }
    )

"""The model server of ``imdb-mlops serve``: MLflow's own scoring app (the same ``/invocations``,
``/ping``, ``/health``, ``/version`` and request formats as ``mlflow models serve``) for a
registered model, behind :class:`~imdb_mlops.serving.admission.AdmissionControl`, in uvicorn
worker processes under uvicorn's supervisor, which replaces a worker that dies.

Each worker loads the model before it accepts a connection, so ``/ping`` is answered only by a
worker that can predict. ``serving.workers`` unset: one worker per CPU as far as memory allows,
at least 2 where 2 fit (a lone worker has no supervisor: uvicorn runs one worker in-process).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from imdb_mlops.config import ServingConfig

SETTINGS_ENV = "IMDB_MLOPS_SERVE_SETTINGS"  # JSON handed to the workers: model, tracking URI, limits
WORKER_MEMORY = 1536 * 1024**2  # a worker with the classifier loaded (all its shipped variants), at most


def create_app() -> Any:
    """The ASGI app of one worker (uvicorn calls this in each worker process)."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    from imdb_mlops.registry.versions import load_pyfunc
    from imdb_mlops.serving.admission import AdmissionControl
    from imdb_mlops.serving.request_checks import RefuseEmptyRequests

    settings = json.loads(os.environ[SETTINGS_ENV])
    mlflow.set_tracking_uri(settings["tracking_uri"])
    model = load_pyfunc(settings["model_uri"])
    return AdmissionControl(RefuseEmptyRequests(scoring_server.init(model)), ServingConfig(**settings["limits"]))


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
        "uvicorn",
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


def serve_settings(model_uri: str, tracking_uri: str, limits: ServingConfig) -> str:
    return json.dumps({"model_uri": model_uri, "tracking_uri": tracking_uri, "limits": limits.model_dump()})

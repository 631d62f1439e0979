"""``python -m imdb_mlops.serving.supervisor <uvicorn options>``: uvicorn's own command line and
multiprocess supervisor, with a dead worker noticed at once even while a health check waits on it.

uvicorn's supervisor pings every worker twice a second and waits up to
``--timeout-worker-healthcheck`` seconds (``imdb-mlops serve`` sets 30: a worker busy predicting on a
loaded machine may answer late) for the answer on a pipe. The supervisor holds both ends of that pipe,
so a worker killed while a ping is in flight never closes it: the supervisor waited the whole 30 s
before it noticed the death (measured: a worker ``kill -9``-ed under load was replaced after 36 s in
2 of 13 ``benchmarks/serve_load.py`` runs, after 6-10 s in the others). Here the wait also ends when
the worker process exits (its sentinel), so a death is noticed within the supervisor's next round.
Everything else is uvicorn's, unchanged.
"""

from __future__ import annotations

import pickle
from multiprocessing.connection import wait
from typing import Any


def healthcheck_until_answer_or_exit(process: Any, timeout: float) -> bool | None:
    """uvicorn's ``Process._healthcheck``: ping the worker and return its startup flag, or None when no
    answer comes within ``timeout`` *or the worker process exits first*."""
    try:
        process.parent_conn.send(b"ping")
        ready = wait([process.parent_conn, process.process.sentinel], timeout)
        if process.parent_conn in ready:
            started: bool = process.parent_conn.recv()
            return started
        return None  # timed out, or the worker is gone and will never answer
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def install() -> None:
    """Replace uvicorn's health check by :func:`healthcheck_until_answer_or_exit` (uvicorn is pinned
    in ``requirements.lock``; a release without ``Process._healthcheck`` is refused, not half-patched)."""
    from uvicorn.supervisors import multiprocess

    if not hasattr(multiprocess.Process, "_healthcheck"):
        raise RuntimeError("uvicorn's Process._healthcheck is gone: update imdb_mlops.serving.supervisor")
    multiprocess.Process._healthcheck = healthcheck_until_answer_or_exit


def main() -> None:  # pragma: no cover - runs as the server process of `imdb-mlops serve`
    from uvicorn.main import main as uvicorn_main

    install()
    uvicorn_main(prog_name="uvicorn")


if __name__ == "__main__":  # pragma: no cover
    main()

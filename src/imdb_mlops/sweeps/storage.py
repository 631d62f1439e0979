"""Where a study lives, and the two things Optuna leaves to its caller when several processes on
several machines share one study: claiming the next trial without going over the study's budget
(a lock held while counting and asking: a PostgreSQL advisory lock, or ``flock`` on a file beside
the journal), and noticing a machine that died mid-trial (each running trial carries a heartbeat
timestamp; one unheard of for too long is marked failed, so the study goes on without it)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config.sweep import STORAGE_ENV

DEFAULT_JOURNAL_DIR = Path(".sweeps")  # ignored by git and DVC
HEARTBEAT_ATTR = "heartbeat"
STALE_AFTER_BEATS = 5


def storage_spec(configured: str | None, study: str, project_dir: Path = Path(".")) -> str:
    """``$IMDB_MLOPS_SWEEP_STORAGE``, else ``sweep.storage``, else the journal ``.sweeps/STUDY.journal``;
    a journal path made absolute (a trial's stage runs in another folder)."""
    spec = os.environ.get(STORAGE_ENV) or configured or f"journal:{DEFAULT_JOURNAL_DIR / f'{study}.journal'}"
    if spec.startswith("sqlite"):
        raise PipelineError(f"${STORAGE_ENV}: sqlite cannot hold parallel trials; use a journal file or PostgreSQL")
    if spec.startswith("journal:"):
        path = Path(spec.removeprefix("journal:")).expanduser()
        return f"journal:{(project_dir / path).resolve() if not path.is_absolute() else path}"
    if spec.startswith("postgresql://"):  # SQLAlchemy 2 takes psycopg 3 by this name
        return "postgresql+psycopg://" + spec.removeprefix("postgresql://")
    if spec.startswith("postgresql+psycopg://"):
        return spec
    raise PipelineError(f"sweep storage '{spec}': expected journal:PATH or postgresql://HOST/DB")


def storage_kind(spec: str) -> str:
    """``journal`` or ``postgresql``: what runs and tags may record (never the URL or path)."""
    return "journal" if spec.startswith("journal:") else "postgresql"


def open_storage(spec: str) -> Any:
    import optuna

    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(spec, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # SQLAlchemy's connection errors are many; the URL stays private
        raise PipelineError(f"sweep storage ({storage_kind(spec)}): cannot open it: {type(exc).__name__}") from None


@contextlib.contextmanager
def claim_lock(spec: str, study: str) -> Iterator[None]:
    """One claimer at a time over every process and machine sharing the study."""
    if spec.startswith("journal:"):
        lock_path = Path(spec.removeprefix("journal:") + ".claim.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"imdb-mlops-sweep:{study}".encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(spec, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def fail_stale_trials(study: Any, heartbeat_s: float, now: float | None = None) -> list[int]:
    """Mark failed each running trial whose heartbeat is older than ``STALE_AFTER_BEATS`` beats
    (the machine running it died); returns their numbers."""
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get(HEARTBEAT_ATTR, trial.datetime_start.timestamp() if trial.datetime_start else now)
        if now - float(beat) > STALE_AFTER_BEATS * heartbeat_s:
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


class Heartbeat:
    """Stamps a running trial every ``interval_s`` until stopped."""

    def __init__(self, trial: Any, interval_s: float) -> None:
        self._trial, self._interval = trial, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def _beat(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is not fatal; five in a row are
                self._trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

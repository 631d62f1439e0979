"""The supervisor's health check: a worker's answer, its silence, and its death while a ping waits."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from types import SimpleNamespace

from imdb_mlops.serving.supervisor import healthcheck_until_answer_or_exit, install

FORK = multiprocessing.get_context("fork")


def answer_one_ping(conn) -> None:
    conn.recv()
    conn.send(True)
    time.sleep(60)


def stay_silent(conn) -> None:  # never answers, like a worker busy or dying
    time.sleep(60)


def worker(target):
    """What uvicorn's ``Process`` holds that the check reads: its end of the pipe and the process. The
    worker's end stays open here too, as in uvicorn's supervisor: a dead worker never closes the pipe."""
    parent_conn, child_conn = FORK.Pipe()
    process = FORK.Process(target=target, args=(child_conn,))
    process.start()
    return SimpleNamespace(parent_conn=parent_conn, child_conn=child_conn, process=process)


def stop(held) -> None:
    held.process.kill()
    held.process.join()


def test_a_worker_that_answers_reports_its_startup_flag():
    held = worker(answer_one_ping)
    try:
        assert healthcheck_until_answer_or_exit(held, timeout=30) is True
    finally:
        stop(held)


def test_a_worker_killed_while_a_ping_waits_is_noticed_at_once_not_after_the_timeout():
    held = worker(stay_silent)
    killer = threading.Timer(0.5, os.kill, (held.process.pid, signal.SIGKILL))
    try:
        killer.start()
        start = time.monotonic()
        assert healthcheck_until_answer_or_exit(held, timeout=30) is None
        assert time.monotonic() - start < 10  # uvicorn's own check waits the whole 30 s here
    finally:
        killer.cancel()
        stop(held)


def test_a_silent_live_worker_still_times_out():
    held = worker(stay_silent)
    try:
        assert healthcheck_until_answer_or_exit(held, timeout=0.3) is None
        assert held.process.is_alive()
    finally:
        stop(held)


def test_install_puts_the_check_into_uvicorns_supervisor():
    from uvicorn.supervisors import multiprocess

    original = multiprocess.Process._healthcheck
    try:
        install()
        assert multiprocess.Process._healthcheck is healthcheck_until_answer_or_exit
    finally:
        multiprocess.Process._healthcheck = original

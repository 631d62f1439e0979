"""``imdb-mlops serve`` on the champion of the training flow: supervised workers that are replaced
when killed, admission control in front of MLflow's scoring app, nothing left after SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import requests

from helpers import cli_env
from servers import free_port, start_logged_server, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="flow")]
CHOICE_LINE = "imdb-mlops classifier: serving the "


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def workers_of(pid: int) -> list[int]:
    """uvicorn's worker processes (its multiprocessing helper aside)."""
    return [c for c in children(pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def thread_nice(pid: int) -> dict[int, int]:
    """Each thread of ``pid``: its nice value (field 19 of its stat)."""
    found = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            found[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[16])
        except OSError:
            continue
    return found


def ping(url: str) -> bool:
    try:
        return requests.get(f"{url}/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_serve_replaces_killed_workers_and_leaves_nothing_after_sigterm(flow_project):
    project, _ = flow_project
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = cli_env(MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
    log = project / f"serve-{port}.log"
    server = start_logged_server(
        [sys.executable, "-m", "imdb_mlops", "serve", "--port", str(port), "--workers", "2"], project, env, log
    )

    def serving() -> int:  # uvicorn logs this once a worker has loaded the model
        return log.read_text(errors="replace").count("Application startup complete")

    try:
        wait_until(lambda: ping(url) and serving() == 2, 120, "two workers serving")
        body = {"inputs": ["awful boring dull terrible", "wonderful brilliant superb"]}
        answer = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        assert requests.post(f"{url}/invocations", data="x" * (17 * 1024**2), timeout=30).status_code == 413
        blank = requests.post(f"{url}/invocations", json={"inputs": ["a fine film", "  "]}, timeout=30)
        assert blank.status_code == 400 and blank.json()["message"].startswith("text 1 is empty")
        nothing = requests.post(f"{url}/invocations", json={"inputs": []}, timeout=30)
        assert nothing.status_code == 400 and nothing.json()["message"].startswith("no texts were sent")
        for _ in range(4):  # both workers predict (the kernel spreads connections over them)
            assert requests.post(f"{url}/invocations", json=body, timeout=30).status_code == 200
        # serving.prediction_nice (10): predictions run lowered, each worker's event loop does not
        base, nices = os.getpriority(os.PRIO_PROCESS, 0), {p: thread_nice(p) for p in workers_of(server.pid)}
        assert all(threads[pid] == base for pid, threads in nices.items()), nices
        assert any(min(19, base + 10) in threads.values() for threads in nices.values()), nices
        first, second = workers_of(server.pid)
        os.kill(first, signal.SIGKILL)  # one worker dies: the other keeps answering
        for _ in range(10):
            assert requests.post(f"{url}/invocations", json=body, timeout=30).status_code in (200, 503)
        wait_until(lambda: serving() == 3 and first not in workers_of(server.pid), 60, "the killed worker replaced")
        for pid in workers_of(server.pid):  # every worker dies: the supervisor brings service back
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: ping(url) and serving() == 5, 90, "service restored")
        assert second not in workers_of(server.pid)
        assert requests.post(f"{url}/invocations", json=body, timeout=30).status_code == 200
        # the first worker chose the variant; the second and the three replacements loaded it by name
        loads = [line for line in log.read_text(errors="replace").splitlines() if CHOICE_LINE in line]
        assert len(loads) == 5 and sum("(by name;" in line for line in loads) == 4, loads
        assert len({line.split(CHOICE_LINE)[1].split()[0] for line in loads}) == 1, loads
        pids = [server.pid, *children(server.pid)]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), 30, "no process left")
        assert not ping(url)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

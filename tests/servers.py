"""Real servers on loopback for the tests: a free port, bounded waits, an ``mlflow server``, and
starting and stopping a logged server process. Imported as ``servers`` (tests/ is on the path)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from helpers import cli_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], seconds: float, what: str, every_s: float = 0.2) -> Any:
    """Poll ``check`` until it gives a true value, and return that; an AssertionError naming ``what``
    after ``seconds`` (a test never waits without a deadline: a condition that cannot come any more
    would hang the run)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not within {seconds} s: {what}")


def wait_for(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: server exited with {process.returncode}: {server_output(process)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url}: no answer within {timeout_s} s")


def start_mlflow_server(
    port: int,
    backend_uri: str,
    cwd: Path,
    artifacts: Path | None = None,
    quiet: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """A real ``mlflow server`` on 127.0.0.1:``port`` (one worker); stop it with ``terminate()``."""
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", backend_uri, "--workers", "1"]  # fmt: skip
    if artifacts is not None:
        command += ["--artifacts-destination", str(artifacts)]
    if quiet:
        return subprocess.Popen(command, cwd=cwd, env=cli_env(**(env or {})), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
    return start_logged_server(command, cwd, cli_env(**(env or {})), Path(cwd) / f"mlflow-server-{port}.log")


def start_logged_server(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A long-lived server whose output goes to ``log``, never to a pipe: a pipe nobody reads fills
    (64 KiB of access lines) and the server then blocks on its next write, hanging every request."""
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    process.log_path = log
    return process


def server_output(process: subprocess.Popen, tail: int = 4000) -> str:
    """The last ``tail`` characters a server started by :func:`start_logged_server` printed."""
    log = getattr(process, "log_path", None)
    if log is not None and log.exists():
        return log.read_text(errors="replace")[-tail:]
    return process.stdout.read()[-tail:] if process.stdout else ""


def stop_server(server: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s`` (a loaded 2-core machine can
    keep an MLflow server and its job consumers busy past a polite wait)."""
    server.terminate()
    try:
        server.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)

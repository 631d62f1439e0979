"""How many workers ``imdb-mlops serve`` starts, with how many threads, and the uvicorn command it
becomes."""

import os
import stat
import subprocess
import tempfile

from imdb_mlops.config import ServingConfig
from imdb_mlops.modeling.runtimes import cpu_threads, ort_session_options
from imdb_mlops.serving.server import (
    SHARED_DIR_PREFIX,
    WORKER_MEMORY,
    prepare_shared_dir,
    serve_settings,
    threads_per_worker,
    uvicorn_command,
    worker_count,
    worker_env,
)


def test_workers_follow_cpus_as_far_as_memory_allows_and_are_at_least_two_where_two_fit():
    assert worker_count(None, cpus=8, memory=100 * WORKER_MEMORY) == 8
    assert worker_count(None, cpus=8, memory=3 * WORKER_MEMORY) == 3
    assert worker_count(None, cpus=1, memory=10 * WORKER_MEMORY) == 2  # supervised even on one CPU
    assert worker_count(None, cpus=4, memory=WORKER_MEMORY // 2) == 1
    assert worker_count(5, cpus=1, memory=0) == 5  # asked for: as asked


def test_the_command_is_a_supervised_uvicorn_of_the_app_factory_on_the_given_interface():
    command = uvicorn_command("127.0.0.1", 5001, 2)
    assert command[1:5] == ["-m", "imdb_mlops.serving.supervisor", "--factory", "imdb_mlops.serving.server:create_app"]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--workers") + 1] == "2"
    settings = serve_settings("models:/m@champion", "sqlite:///x.db", ServingConfig(max_queue=3))
    assert '"max_queue": 3' in settings and '"model_uri": "models:/m@champion"' in settings


def test_the_cores_are_shared_among_the_workers_so_busy_workers_do_not_fight_over_them():
    assert threads_per_worker(None, cpus=2, workers=2) == 1
    assert threads_per_worker(None, cpus=16, workers=4) == 4
    assert threads_per_worker(None, cpus=2, workers=3) == 1  # at least one
    assert threads_per_worker(3, cpus=2, workers=2) == 3  # asked for: as asked


def test_a_worker_given_its_share_runs_onnx_runtime_and_torch_with_that_many_threads(monkeypatch):
    for name, value in worker_env(1).items():
        monkeypatch.setenv(name, value)
    assert cpu_threads() == 1
    assert ort_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("IMDB_MLOPS_CPU_THREADS", "not-a-number")  # ignored: the process's own cores
    assert cpu_threads() >= 1


def test_the_shared_folder_is_new_and_private_and_those_of_stopped_servers_go(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = _exited_pid()
    (tmp_path / f"{SHARED_DIR_PREFIX}{dead}").mkdir()  # a server no longer running
    alive = tmp_path / f"{SHARED_DIR_PREFIX}{os.getppid()}"  # a server still running
    alive.mkdir()
    mine = tmp_path / f"{SHARED_DIR_PREFIX}{os.getpid()}"
    mine.mkdir()
    (mine / "variant.json").write_text('{"variant": "fp32"}')  # left by an earlier process with this pid
    other = tmp_path / f"{SHARED_DIR_PREFIX}notes"  # not one of ours: left alone
    other.mkdir()
    shared = prepare_shared_dir(os.getpid())
    assert shared == mine and list(shared.iterdir()) == [] and stat.S_IMODE(shared.stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, mine.name, other.name])


def _exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid

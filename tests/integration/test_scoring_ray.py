"""Batch scoring on Ray Data (imdb_mlops.scoring.streaming) with the champion of the training flow:
the same predictions as the in-process path, a killed job resumed without rewriting a part, and a
real two-node Ray cluster on loopback that loses a node mid-job."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import cli_env, make_reviews, processes_with_env
from imdb_mlops.config import load_params
from imdb_mlops.registry.predict import predict_chunked
from imdb_mlops.registry.versions import load_pyfunc
from imdb_mlops.scoring.inputs import read_new_reviews
from imdb_mlops.scoring.streaming import part_aggregates
from imdb_mlops.stages.score import score
from servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="flow")]
ROWS_PER_PART = 50


@pytest.fixture(scope="module")
def scoring_job(flow_project, tmp_path_factory):
    """(project, params file with small parts, input folder, output of one uninterrupted run)."""
    project, _ = flow_project
    root = tmp_path_factory.mktemp("ray-scoring")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["scoring"]["rows_per_part"] = ROWS_PER_PART
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    incoming = root / "incoming"
    incoming.mkdir()
    reviews = make_reviews(700, seed=21, prefix="streamed ")[["text"]]
    reviews.iloc[:600].to_parquet(incoming / "a.parquet", row_group_size=ROWS_PER_PART)  # 12 parts
    reviews.iloc[600:].to_json(incoming / "b.jsonl", orient="records", lines=True)  # 2 parts
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    # one variant everywhere (each loader otherwise picks the fastest on its own probe), so that
    # predictions are comparable bit for bit; Ray's local workers inherit it
    os.environ["IMDB_MLOPS_VARIANT"] = "fp32"
    report = score(load_params(params_file), incoming, root / "whole", None, project / "data/raw", project_dir=project)
    yield project, params_file, incoming, root / "whole", report
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("IMDB_MLOPS_VARIANT", None)


def parts_of(out: Path) -> dict[str, tuple[int, int]]:
    """Part file name -> (inode, modification time): a part written again changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "predictions.parquet").glob("part-*")}


def score_command(incoming: Path, out: Path, params_file: Path) -> list[str]:
    return [sys.executable, "-m", "imdb_mlops", "score", str(incoming), "--out", str(out), "-p", str(params_file)]


def test_streamed_predictions_equal_the_in_process_path(scoring_job):
    _, params_file, incoming, whole, report = scoring_job
    params = load_params(params_file)
    assert report["reviews"] == 700 and report["parts"] == 14 and report["parts_reused"] == 0
    assert report["parts_by_variant"] == {"fp32": 14}
    streamed = pd.read_parquet(whole / "predictions.parquet")
    reviews = read_new_reviews(incoming, "text")
    in_process = predict_chunked(
        load_pyfunc("models:/imdb-sentiment@champion"), reviews["text"].tolist(), params.registry.max_texts_per_request
    )
    assert streamed["text"].tolist() == reviews["text"].tolist()
    assert streamed["label"].tolist() == in_process["label"].tolist()
    assert (streamed["positive_probability"] - in_process["positive_probability"]).abs().max() < 1e-5
    assert {p.name for p in (whole / "predictions.parquet").iterdir()} == set(parts_of(whole))  # no leftovers
    assert json.loads((whole / "drift.json").read_text())["drift"] == report["drift"]


def test_a_killed_job_rerun_writes_each_part_once_and_ends_as_an_uninterrupted_run(scoring_job, tmp_path):
    project, params_file, incoming, whole, _ = scoring_job
    out = tmp_path / "out"
    marker = f"IMDB_MLOPS_TEST_SCORE_{secrets.token_hex(4)}"
    command = score_command(incoming, out, params_file)
    job = subprocess.Popen(
        command, cwd=project, env=cli_env(**{marker: "1"}), stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while len(parts_of(out)) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)  # the command and its Ray instance, mid-job
    job.wait()
    for _ in range(50):  # nothing of the killed job is left running (an actor may outlive the group briefly)
        if not processes_with_env(marker):
            break
        time.sleep(0.2)
    assert processes_with_env(marker) == []
    before = parts_of(out)  # taken once nothing can write any more
    assert 3 <= len(before) < 14 and not (out / "drift.json").exists()
    rerun = subprocess.run(command, cwd=project, env=cli_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} already there" in " ".join(rerun.stderr.split())
    after = parts_of(out)
    assert set(after) == set(parts_of(whole)) and all(after[name] == stat for name, stat in before.items())
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "predictions.parquet"), pd.read_parquet(whole / "predictions.parquet")
    )
    assert (
        json.loads((out / "drift.json").read_text())["drift"] == json.loads((whole / "drift.json").read_text())["drift"]
    )


def test_ctrl_c_stops_the_job_within_seconds_and_leaves_nothing_running(scoring_job, tmp_path):
    """SIGINT to the job's process group, as a terminal's Ctrl-C sends it."""
    project, params_file, _, _, _ = scoring_job
    incoming = tmp_path / "incoming"  # 40 parts: most are still to score when Ctrl-C comes
    incoming.mkdir()
    make_reviews(2000, seed=5)[["text"]].to_parquet(incoming / "a.parquet", row_group_size=ROWS_PER_PART)
    out = tmp_path / "out"
    marker = f"IMDB_MLOPS_TEST_SCORE_{secrets.token_hex(4)}"
    job = subprocess.Popen(
        score_command(incoming, out, params_file),
        cwd=project,
        env=cli_env(**{marker: "1"}),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as in a terminal: pytest-xdist's workers ignore SIGINT, and an ignored SIGINT is inherited
        # (Python then installs no KeyboardInterrupt handler at all)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not parts_of(out) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGINT)
    interrupted = time.monotonic()
    try:
        _, stderr = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert time.monotonic() - interrupted < 15, "still running 15 s after Ctrl-C"
    assert job.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted:"), stderr
    for _ in range(50):
        if not processes_with_env(marker):
            break
        time.sleep(0.2)
    assert processes_with_env(marker) == []
    assert not (out / "drift.json").exists()
    for part in (out / "predictions.parquet").iterdir():  # every part whole
        assert part.name.startswith("part-") and len(pd.read_parquet(part)) > 0


def ray_node(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own: killing the group kills the node."""
    ray = Path(sys.executable).parent / "ray"
    return subprocess.Popen(
        [str(ray), "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_nodes(address: str, count: int, env: dict[str, str]) -> None:
    probe = f"import ray; ray.init(address={address!r}, logging_level='error'); print(len(ray.nodes()))"
    for _ in range(60):
        proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.split() and int(proc.stdout.split()[-1]) >= count:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster at {address} never had {count} nodes")


def test_a_two_node_cluster_scores_across_both_and_survives_losing_one(scoring_job, tmp_path):
    project, params_file, _, _, _ = scoring_job
    raw = yaml.safe_load(params_file.read_text())
    raw["scoring"]["rows_per_part"] = 10
    small_parts = tmp_path / "params.yaml"
    small_parts.write_text(yaml.safe_dump(raw))
    reviews = make_reviews(1000, seed=5, prefix="clustered ")[["text"]]
    reviews.to_parquet(tmp_path / "many.parquet", row_group_size=10)  # 100 parts
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = cli_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    head = ray_node(["--head", f"--port={port}", "--include-dashboard=false"], env)
    worker = None
    try:
        wait_for_nodes(address, 1, env)
        worker = ray_node([f"--address={address}", '--resources={"second_node": 1}'], env)
        wait_for_nodes(address, 2, env)
        out = tmp_path / "out"
        job = subprocess.Popen(
            [*score_command(tmp_path / "many.parquet", out, small_parts), "--ray-address", address],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        nodes: set[str] = set()
        while len(nodes) < 2 and job.poll() is None and time.monotonic() < deadline:
            nodes = {(part_aggregates(out / "predictions.parquet" / name) or {}).get("node") for name in parts_of(out)}
            nodes.discard(None)
            time.sleep(0.1)
        assert len(nodes) == 2, "both nodes write parts"
        os.killpg(worker.pid, signal.SIGKILL)  # the second node is lost mid-job
        assert len(parts_of(out)) < 100, "the job was still running when the node was lost"
        _, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, stderr[-3000:]
        scored = pd.read_parquet(out / "predictions.parquet")
        assert len(parts_of(out)) == 100 and scored["text"].tolist() == reviews["text"].tolist()
        in_process = predict_chunked(load_pyfunc("models:/imdb-sentiment@champion"), reviews["text"].tolist(), 256)
        assert scored["label"].tolist() == in_process["label"].tolist()
        assert (scored["positive_probability"] - in_process["positive_probability"]).abs().max() < 1e-5
    finally:
        for node in (worker, head):
            if node is not None and node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()

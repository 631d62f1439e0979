"""Parts of a streamed scoring job: written whole or not at all, and leftovers of interrupted writers removed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from imdb_mlops.common.files import process_alive
from imdb_mlops.scoring.streaming import part_aggregates, remove_unfinished_parts, write_part


def test_a_part_carries_its_aggregates(tmp_path):
    part = tmp_path / "part-00000-abc.parquet"
    write_part(part, pd.DataFrame({"text": ["a fine film"], "label": ["positive"]}), {"rows": 1})
    assert part_aggregates(part) == {"rows": 1}
    assert [p.name for p in tmp_path.iterdir()] == [part.name]


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    real_write = pq.write_table

    def write_then_interrupt(table, where):
        real_write(table, where)
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_part(tmp_path / "part-00000-abc.parquet", pd.DataFrame({"text": ["x"]}), {"rows": 1})
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_dead_writers_are_removed_and_whole_parts_kept(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    whole = tmp_path / "part-00000-abc.parquet"
    write_part(whole, pd.DataFrame({"text": ["x"]}), {"rows": 1})
    leftover = tmp_path / f".part-00001-def.parquet.{gone.pid}.tmp"
    leftover.write_bytes(b"PAR1 half")
    remove_unfinished_parts(tmp_path, wait_s=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [whole.name]


def test_a_writer_still_alive_gets_time_to_finish(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    leftover = tmp_path / f".part-00001-def.parquet.{writer.pid}.tmp"
    leftover.write_bytes(b"PAR1 half")
    try:
        remove_unfinished_parts(tmp_path, wait_s=60)
        assert not process_alive(writer.pid)  # it waited for the writer to end
        assert not leftover.exists()
    finally:
        writer.kill()
        writer.wait()


def test_after_the_session_ray_calls_fail_instead_of_joining_the_last_cluster():
    """A Ray Data thread outliving an interrupted job must not start or join a cluster by itself
    (it would join the instance just stopped, named in /tmp/ray/ray_current_cluster, and hang)."""
    probe = textwrap.dedent(
        """
        import time
        from imdb_mlops.scoring.streaming import ray_session
        with ray_session(None):
            import ray
            assert ray.get(ray.put(1)) == 1
        started = time.monotonic()
        try:
            ray.put(2)
        except Exception as exc:
            print("refused", type(exc).__name__, round(time.monotonic() - started, 1))
        else:
            print("auto-connected")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_AUTO_CONNECT")}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdict = proc.stdout.split()
    assert verdict[0] == "refused" and float(verdict[-1]) < 5, proc.stdout

"""Parts of a streamed scoring job: written whole or not at all, and leftovers of interrupted writers removed."""

from __future__ import annotations

import subprocess
import sys

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

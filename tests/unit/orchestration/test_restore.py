"""Putting back a failed stage's outputs from DVC's cache, by the hashes dvc.lock records."""

from __future__ import annotations

import hashlib
import json

import yaml

from imdb_mlops.orchestration.restore import restore_stage_outputs


def _store(cache, payload: bytes, suffix: str = "") -> str:
    md5 = hashlib.md5(payload).hexdigest() + suffix
    (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
    (cache / md5[:2] / md5[2:]).write_bytes(payload)
    return md5


def _project(tmp_path, outs):
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"ingest": {"outs": outs}}}))


def test_missing_outputs_come_back_whole_and_present_ones_are_left(tmp_path):
    cache = tmp_path / ".dvc" / "cache" / "files" / "md5"
    cache.mkdir(parents=True)
    files = {"train.parquet": b"train rows", "sub/test.parquet": b"test rows"}
    listing = [{"md5": _store(cache, data), "relpath": name} for name, data in files.items()]
    dir_md5 = _store(cache, json.dumps(listing).encode(), ".dir")
    report = _store(cache, b'{"rows": 2}')
    _project(
        tmp_path,
        [
            {"path": "data/raw", "md5": dir_md5},
            {"path": "reports/data.json", "md5": report},
            {"path": "reports/kept.json", "md5": report},
        ],
    )
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "kept.json").write_text("written by this run")
    restored, missing = restore_stage_outputs("ingest", tmp_path)
    assert restored == ["data/raw", "reports/data.json"] and missing == []
    assert (tmp_path / "data/raw/sub/test.parquet").read_bytes() == b"test rows"
    assert (tmp_path / "reports/data.json").read_bytes() == b'{"rows": 2}'
    assert (tmp_path / "reports/kept.json").read_text() == "written by this run"  # never overwritten
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]  # no temporaries left


def test_an_output_not_in_the_cache_is_reported_and_nothing_half_built(tmp_path):
    cache = tmp_path / ".dvc" / "cache" / "files" / "md5"
    cache.mkdir(parents=True)
    listing = [{"md5": _store(cache, b"a"), "relpath": "a"}, {"md5": "0" * 32, "relpath": "b"}]
    dir_md5 = _store(cache, json.dumps(listing).encode(), ".dir")
    _project(tmp_path, [{"path": "data/raw", "md5": dir_md5}, {"path": "reports/x.json", "md5": "f" * 32}])
    assert restore_stage_outputs("ingest", tmp_path) == ([], ["data/raw", "reports/x.json"])
    assert not (tmp_path / "data" / "raw").exists() and list((tmp_path / "data").iterdir()) == []
    assert restore_stage_outputs("train", tmp_path) == ([], [])  # a stage that never ran: nothing to do

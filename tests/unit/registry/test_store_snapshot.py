"""The direct SQLite read of a registered model equals what MLflow's client reads, and steps aside
(None) wherever MLflow should answer instead."""

from __future__ import annotations

import json
import os

import pytest

from helpers import REPO_ROOT, run_cli, sqlite_registry
from imdb_mlops.registry.aliases import promote
from imdb_mlops.registry.history import HISTORY_TAG, history_entries, parse_history
from imdb_mlops.registry.store_snapshot import read_snapshot

MODEL = "imdb-sentiment"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("IMDB_MLOPS_LOCK_DIR", str(tmp_path / "locks"))
    client = sqlite_registry(tmp_path, MODEL)
    for number in range(3):
        (tmp_path / f"v{number}").mkdir()
        client.create_model_version(MODEL, source=str(tmp_path / f"v{number}"))
    promote(client, MODEL, "1")
    promote(client, MODEL, "3", reason="better")
    client.set_registered_model_alias(MODEL, "challenger", "2")
    return client


def test_the_snapshot_equals_what_mlflow_reads(registry):
    snapshot = read_snapshot(registry.tracking_uri, MODEL)
    mlflow_view = registry.get_registered_model(MODEL)
    assert snapshot.tags == mlflow_view.tags
    assert snapshot.aliases == {alias: str(v) for alias, v in mlflow_view.aliases.items()}
    assert parse_history(snapshot.tags[HISTORY_TAG]) == history_entries(registry, MODEL)


def test_anything_but_a_readable_sqlite_store_with_the_model_is_left_to_mlflow(registry, tmp_path):
    assert read_snapshot(registry.tracking_uri, "no-such-model") is None
    assert read_snapshot("http://127.0.0.1:5000", MODEL) is None
    assert read_snapshot(f"sqlite:///{tmp_path / 'missing.db'}", MODEL) is None
    (tmp_path / "other.db").write_bytes(b"not a database at all" * 100)
    assert read_snapshot(f"sqlite:///{tmp_path / 'other.db'}", MODEL) is None


def test_registry_history_reads_the_store_without_changing_it(registry, tmp_path):
    store = registry.tracking_uri.removeprefix("sqlite:///")
    before = os.stat(store).st_mtime_ns
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    proc = run_cli("registry", "history", "--json", cwd=tmp_path, MLFLOW_TRACKING_URI=registry.tracking_uri)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [entry.model_dump() for entry in history_entries(registry, MODEL)]
    table = run_cli("registry", "history", cwd=tmp_path, MLFLOW_TRACKING_URI=registry.tracking_uri)
    assert "champion history (now 3)" in table.stdout and "better" in table.stdout
    assert os.stat(store).st_mtime_ns == before

"""Champion moves and rollback on a real (SQLite) MLflow registry, versions without artifacts."""

from __future__ import annotations

import pytest

from helpers import sqlite_registry
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.registry.aliases import champion_history, promote, rollback

MODEL = "imdb-sentiment"


@pytest.fixture
def client(tmp_path):
    client = sqlite_registry(tmp_path, MODEL)
    for number in range(3):
        (tmp_path / f"v{number}").mkdir()
        client.create_model_version(MODEL, source=str(tmp_path / f"v{number}"))
    return client


def test_rollback_skips_versions_deleted_since_they_were_champion(client):
    for version in ("1", "2", "3"):
        promote(client, MODEL, version)
    assert champion_history(client, MODEL) == ["1", "2", "3"]
    client.delete_model_version(MODEL, "2")
    assert rollback(client, MODEL) == ("3", "1")
    promote(client, MODEL, "3")
    client.delete_model_version(MODEL, "1")
    with pytest.raises(
        PipelineError, match=r"version 3 has no earlier champion to roll back to \(the earlier champion 1 deleted\)"
    ):
        rollback(client, MODEL)
    assert str(client.get_registered_model(MODEL).aliases["champion"]) == "3"  # nothing moved

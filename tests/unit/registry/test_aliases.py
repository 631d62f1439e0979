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


def test_history_records_each_move_with_its_source_and_reads_the_first_format(client):
    import json

    from imdb_mlops.registry.history import HISTORY_TAG, history_entries

    client.set_registered_model_tag(MODEL, HISTORY_TAG, json.dumps(["1", "2"]))  # written by older versions
    client.set_registered_model_alias(MODEL, "champion", "2")
    promote(client, MODEL, "3", reason="better")
    assert rollback(client, MODEL) == ("3", "2")
    assert rollback(client, MODEL) == ("2", "1")
    entries = history_entries(client, MODEL)
    assert [(e.action, e.version, e.previous, e.source) for e in entries[2:]] == [
        ("set", "3", "2", "cli"),
        ("rollback", "2", "3", "rollback"),
        ("rollback", "1", "2", "rollback"),
    ]
    assert champion_history(client, MODEL) == ["1"]
    assert entries[2].reason == "better" and entries[2].at.endswith("+00:00")


def test_a_failed_alias_move_leaves_no_history_entry(client):
    from imdb_mlops.registry.aliases import set_champion

    promote(client, MODEL, "1")
    with pytest.raises(Exception, match="99"):
        set_champion(client, MODEL, "99", "no such version")
    assert champion_history(client, MODEL) == ["1"]


def test_the_gate_never_promotes_a_version_failing_the_behaviour_criterion(client, tmp_path):
    import yaml

    from helpers import REPO_ROOT
    from imdb_mlops.config import validate_params
    from imdb_mlops.registry.promotion import promotion_gate

    tree = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    tree["registry"]["behaviour_min_pass"] = 0.8
    behaviour = {"families": {"mft": {"pass_rate": 0.74}, "invariance": {"pass_rate": 0.98}}}
    decision = promotion_gate(validate_params(tree).registry, 42, client, "1", tmp_path, behaviour)
    assert decision["action"] == "refused_behaviour" and not decision["passes"]
    assert decision["reason"] == "behavioural checks below registry.behaviour_min_pass 0.8: mft 0.74"
    assert "champion" not in client.get_registered_model(MODEL).aliases


def test_a_gate_does_not_override_a_champion_moved_while_it_was_scoring(client):
    from imdb_mlops.registry.aliases import current_champion, set_champion

    promote(client, MODEL, "1")  # the champion the gate compares against
    promote(client, MODEL, "3", reason="set in the UI meanwhile")
    moved = set_champion(client, MODEL, "2", "gate passed", "register-stage", expected="1", check_expected=True)
    assert moved is False and current_champion(client, MODEL) == "3"
    assert champion_history(client, MODEL) == ["1", "3"]
    assert set_champion(client, MODEL, "2", "gate passed", "register-stage", expected="3", check_expected=True)
    assert current_champion(client, MODEL) == "2"


def test_alias_moves_wait_for_the_registry_lock(client, tmp_path, monkeypatch):
    import threading
    import time

    from imdb_mlops.registry.history import registry_lock

    monkeypatch.setenv("IMDB_MLOPS_LOCK_DIR", str(tmp_path / "locks"))
    order = []
    with registry_lock(client, MODEL):
        mover = threading.Thread(target=lambda: order.append(promote(client, MODEL, "2")))
        mover.start()
        time.sleep(0.5)
        order.append("lock released")
    mover.join(timeout=30)
    assert order == ["lock released", (None, "2")]

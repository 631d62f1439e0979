"""The study's shared storage: where it is, the claim lock, and trials whose machine died."""

import threading
import time
from pathlib import Path

import optuna
import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.sweeps.storage import (
    HEARTBEAT_ATTR,
    Heartbeat,
    claim_lock,
    fail_stale_trials,
    open_storage,
    storage_kind,
    storage_spec,
)


def test_the_default_is_a_journal_in_the_project_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("IMDB_MLOPS_SWEEP_STORAGE", raising=False)
    assert storage_spec(None, "s", tmp_path) == f"journal:{tmp_path.resolve() / '.sweeps' / 's.journal'}"
    assert storage_spec("postgresql://db/o", "s", tmp_path) == "postgresql+psycopg://db/o"
    monkeypatch.setenv("IMDB_MLOPS_SWEEP_STORAGE", "journal:shared.journal")
    assert storage_spec("postgresql://db/o", "s", tmp_path) == f"journal:{tmp_path.resolve() / 'shared.journal'}"
    assert storage_kind(storage_spec(None, "s", tmp_path)) == "journal"
    monkeypatch.setenv("IMDB_MLOPS_SWEEP_STORAGE", "sqlite:///x.db")
    with pytest.raises(PipelineError, match="sqlite cannot hold parallel trials"):
        storage_spec(None, "s", tmp_path)


def test_the_claim_lock_lets_one_claimer_in_at_a_time(tmp_path):
    spec = f"journal:{tmp_path / 's.journal'}"
    inside, most = [], []

    def claimer() -> None:
        with claim_lock(spec, "s"):
            inside.append(1)
            most.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == [1, 1, 1, 1]


def journal_study(path: Path) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=open_storage(f"journal:{path}"), load_if_exists=True)


def test_a_trial_whose_heartbeat_stopped_is_failed_and_a_beating_one_is_not(tmp_path):
    study = journal_study(tmp_path / "s.journal")
    dead, alive = study.ask(), study.ask()
    dead.set_user_attr(HEARTBEAT_ATTR, time.time() - 600)
    with Heartbeat(alive, interval_s=0.05):
        time.sleep(0.2)
        assert fail_stale_trials(study, heartbeat_s=1.0) == [dead.number]
    states = {t.number: t.state.name for t in journal_study(tmp_path / "s.journal").get_trials()}
    assert states == {dead.number: "FAIL", alive.number: "RUNNING"}

"""A trial's train stage: the link read from its environment, evaluations reported, training
stopped when the pruner says so."""

from types import SimpleNamespace

import optuna
import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.sweeps.pruning import PruningCallback
from imdb_mlops.sweeps.storage import open_storage
from imdb_mlops.sweeps.trial_link import TRIAL_ENV, TrialLink, open_trial, trial_from_env


def test_the_link_travels_through_the_environment(monkeypatch):
    link = TrialLink("s", "journal:/x.journal", 7, 3, "accuracy", "parent123", {"kind": "none"})
    monkeypatch.setenv(TRIAL_ENV, link.to_env()[TRIAL_ENV])
    assert trial_from_env() == link
    assert link.mlflow_tags() == {"mlflow.parentRunId": "parent123", "sweep.study": "s", "sweep.trial": "3"}
    monkeypatch.setenv(TRIAL_ENV, "{not json")
    with pytest.raises(PipelineError, match=TRIAL_ENV):
        trial_from_env()
    monkeypatch.delenv(TRIAL_ENV)
    assert trial_from_env() is None


def evaluate(callback: PruningCallback, accuracy: float) -> SimpleNamespace:
    control = SimpleNamespace(should_training_stop=False)
    callback.on_evaluate(None, SimpleNamespace(is_world_process_zero=True), control, {"eval_accuracy": accuracy})
    return control


def test_a_trial_behind_the_median_is_stopped_and_says_so(tmp_path):
    spec = f"journal:{tmp_path / 's.journal'}"
    study = optuna.create_study(
        study_name="s", storage=open_storage(spec), direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )  # fmt: skip
    good = study.ask()
    for step, value in enumerate([0.8, 0.9, 0.95], start=1):
        good.report(value, step)
    study.tell(good, 0.95)

    running = study.ask()  # as the train stage sees it: opened from the storage by its id
    pruner = {"kind": "median", "startup_trials": 1}
    link = TrialLink("s", spec, running._trial_id, running.number, "accuracy", "p", pruner)
    callback = PruningCallback(open_trial(link), link)
    assert evaluate(callback, 0.85).should_training_stop is False  # ahead of the median at evaluation 1
    assert evaluate(callback, 0.5).should_training_stop is True  # behind at evaluation 2
    assert callback.summary() == {"trial": running.number, "pruned": True, "evaluations": 2}
    assert study.trials[running.number].intermediate_values == {1: 0.85, 2: 0.5}

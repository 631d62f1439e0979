"""The Trainer callback of a sweep trial's train stage: each evaluation reported to the trial, training
stopped when the study's pruner says so. Apart from :mod:`.trial_link` so that the sweep itself,
which only hands trials out, does not import transformers."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from imdb_mlops.sweeps.trial_link import TrialLink


class PruningCallback(TrainerCallback):
    """After each evaluation: report the objective's validation value to the trial (step = the
    evaluation's number, comparable across trials of different batch sizes) and stop training
    when the pruner says this trial will not beat the others."""

    def __init__(self, trial: Any, link: TrialLink) -> None:
        self.trial, self.link, self.objective = trial, link, link.objective
        self.evaluations = 0
        self.pruned_at_evaluation: int | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **_: Any):
        value = (metrics or {}).get(f"eval_{self.objective}")
        if value is None or not state.is_world_process_zero:
            return
        self.evaluations += 1
        self.trial.report(float(value), self.evaluations)
        if self.trial.should_prune():
            self.pruned_at_evaluation = self.evaluations
            control.should_training_stop = True

    def summary(self) -> dict[str, Any]:
        """What ``train_metrics.json`` records of the trial (``dvc exp show`` lists it)."""
        return {
            "trial": self.trial.number,
            "pruned": self.pruned_at_evaluation is not None,
            "evaluations": self.evaluations,
        }

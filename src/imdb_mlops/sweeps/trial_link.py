"""The link between a sweep trial and the train stage that runs it, inside ``dvc exp run``.

The sweep hands the trial to the stage in ``$IMDB_MLOPS_SWEEP_TRIAL`` (study, storage, trial,
objective, the MLflow parent run). The stage then reports each evaluation's validation value to
the trial and stops training when the study's pruner says so
(:class:`~imdb_mlops.sweeps.pruning.PruningCallback`), nests
its MLflow run under the sweep's, and records in ``reports/train_metrics.json`` whether it was
pruned. Without the variable the stage trains as always."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import PrunerConfig

TRIAL_ENV = "IMDB_MLOPS_SWEEP_TRIAL"


@dataclass(frozen=True)
class TrialLink:
    study: str
    storage: str  # the resolved storage spec (not recorded anywhere)
    trial_id: int
    number: int
    objective: str  # a validation metric name: accuracy, f1, roc_auc, loss
    parent_run_id: str
    pruner: dict[str, Any]  # sweep.pruner: the study's pruner, which the stage asks

    def to_env(self) -> dict[str, str]:
        return {TRIAL_ENV: json.dumps(self.__dict__)}

    def mlflow_tags(self) -> dict[str, str]:
        return {"mlflow.parentRunId": self.parent_run_id, "sweep.study": self.study, "sweep.trial": str(self.number)}


def trial_from_env() -> TrialLink | None:
    raw = os.environ.get(TRIAL_ENV)
    if not raw:
        return None
    try:
        return TrialLink(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"${TRIAL_ENV}: not a sweep trial ({exc})") from None


def open_trial(link: TrialLink) -> Any:
    """The running Optuna trial (report, should_prune) in its shared storage."""
    import optuna

    from imdb_mlops.sweeps.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(PrunerConfig(**link.pruner))
    study = optuna.load_study(study_name=link.study, storage=open_storage(link.storage), pruner=pruner)
    return optuna.trial.Trial(study, link.trial_id)


def make_pruner(cfg: PrunerConfig) -> Any:
    """Optuna's pruner for ``sweep.pruner`` (the same in the sweep and in each trial's stage)."""
    import optuna

    if cfg.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_evaluations)
    if cfg.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg.min_resource, reduction_factor=cfg.reduction_factor
        )
    return optuna.pruners.NopPruner()

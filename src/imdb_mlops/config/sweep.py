"""The ``sweep:`` section of ``params.yaml``: the hyperparameter search of ``imdb-mlops sweep``
(Optuna chooses, every trial a DVC experiment, tracked in MLflow)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from imdb_mlops.config.base import Section

STORAGE_ENV = "IMDB_MLOPS_SWEEP_STORAGE"  # the study's storage URL when it carries a password


class SearchDimension(Section):
    """One param's range: ``float``, ``log_float`` and ``int`` between ``low`` and ``high``
    (``step`` optional), ``categorical`` from ``choices``."""

    type: Literal["float", "log_float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = Field(None, gt=0)
    choices: list[str | int | float | bool] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _bounds(self) -> SearchDimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical: give choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type}: give low and high")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.type == "log_float" and (self.low <= 0 or self.step is not None):
            raise ValueError("log_float: low must be > 0, and it takes no step")
        if self.type == "int" and not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise ValueError("int: low and high must be integers")
        return self


class PrunerConfig(Section):
    """When a trial is stopped early: ``median`` (below the median of earlier trials at the same
    evaluation), ``successive_halving`` (only the top 1/``reduction_factor`` go on at each rung) or
    ``none``."""

    kind: Literal["median", "successive_halving", "none"] = "median"
    startup_trials: int = Field(2, ge=0)  # median: trials finished before any is pruned
    warmup_evaluations: int = Field(0, ge=0)  # median: evaluations of a trial before it may be pruned
    min_resource: int = Field(1, ge=1)  # successive halving: evaluations before the first rung
    reduction_factor: int = Field(3, ge=2)


def _default_space() -> dict[str, SearchDimension]:
    return {
        "train.learning_rate": SearchDimension(type="log_float", low=1e-5, high=2e-4),
        "train.warmup_ratio": SearchDimension(type="float", low=0.0, high=0.2),
        "train.weight_decay": SearchDimension(type="float", low=0.0, high=0.1),
    }


class SweepConfig(Section):
    """``imdb-mlops sweep``: Optuna's search over ``space``; each trial runs the pipeline up to
    ``stage`` as a DVC experiment on a temporary workspace."""

    study: str = Field("imdb-sweep", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # Where the study lives, shared by every machine that joins it: null = an Optuna journal file
    # in .sweeps/ (this machine); "journal:PATH" = a journal file on shared storage;
    # "postgresql://HOST/DB" = a PostgreSQL database (the one the MLflow server uses will do).
    # A password goes in $IMDB_MLOPS_SWEEP_STORAGE, never here. SQLite is refused (parallel trials).
    storage: str | None = None
    trials: int = Field(8, ge=1)  # trials in the study, over every machine (failed ones are replaced)
    jobs: int = Field(1, ge=1)  # trials at once on this machine
    stage: str = Field("evaluate", min_length=1)  # each trial runs the pipeline up to this DVC stage
    objective: Literal["accuracy", "f1", "roc_auc", "loss"] = "accuracy"  # the best validation value
    direction: Literal["maximize", "minimize"] = "maximize"
    sampler: Literal["tpe", "random"] = "tpe"
    # The sampler's seed: null draws afresh in every process (machines joining one study must not
    # draw the same values); a number repeats a one-process sweep's choices.
    seed: int | None = Field(None, ge=0)
    pruner: PrunerConfig = PrunerConfig()
    heartbeat_s: float = Field(20.0, gt=0)  # a running trial unheard of for 5x this is marked failed
    space: dict[str, SearchDimension] = Field(default_factory=_default_space, min_length=1)

    @model_validator(mode="after")
    def _storage(self) -> SweepConfig:
        storage = self.storage or ""
        if storage.startswith("sqlite"):
            raise ValueError("sqlite cannot hold parallel trials; use a journal file or PostgreSQL")
        if storage and not storage.startswith(("journal:", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(f"'{storage}': expected journal:PATH or postgresql://HOST/DB")
        if "@" in storage and ":" in storage.split("@")[0].split("//")[-1]:
            raise ValueError(f"a password in params.yaml; put the URL in ${STORAGE_ENV} instead")
        if self.objective == "loss" and self.direction == "maximize":
            raise ValueError("objective loss: direction must be minimize")
        return self

"""The sections of ``params.yaml`` for using registered models: batch scoring and serving."""

from __future__ import annotations

from pydantic import Field

from imdb_mlops.config.base import Section


class ScoringConfig(Section):
    """Batch scoring of new reviews and the drift report against the training data."""

    text_column: str = Field("text", min_length=1)
    # Population stability index above this (length or predicted-label distribution) warns.
    psi_warning: float = Field(0.2, gt=0)
    length_bins: int = Field(10, ge=2, le=100)
    # Unknown-token rate above the training data's by more than this warns (0.01 = 1 point).
    unknown_token_increase: float = Field(0.01, ge=0, le=1)
    reference_samples: int = Field(2000, ge=10)  # training reviews drawn for the reference
    rows_per_part: int = Field(10_000, ge=1)  # reviews per output part: the unit a rerun skips when done
    workers: int | None = Field(None, ge=1)  # scoring actors; None: one per CPU that memory allows


class ServingConfig(Section):
    """``imdb-mlops serve``: supervised workers, and admission control in front of ``/invocations``
    so that an overloaded server answers 503 at once instead of queueing requests into timeouts."""

    # uvicorn worker processes, each with the model loaded; a dead one is replaced.
    # None: one per CPU that memory allows, at least 2 where 2 fit.
    workers: int | None = Field(None, ge=1)
    # compute threads of each worker; None: the cores shared among the workers (at least 1), so
    # that busy workers do not fight over the same cores
    threads_per_worker: int | None = Field(None, ge=1)
    max_in_flight: int = Field(1, ge=1)  # predictions computed at once, per worker
    # requests waiting for a slot, per worker; beyond: 503 with Retry-After. One waiting request per
    # slot keeps a worker busy while bounding its wait to one prediction's time.
    max_queue: int = Field(1, ge=0)
    max_queue_wait_s: float = Field(10.0, gt=0)  # a request waiting longer is answered 503
    # ... and one waiting longer than this many of the worker's typical predictions (the median of its
    # recent ones): so an answered request takes at most about (1 + this) predictions; None: off.
    # 0.75 with prediction_nice 10: slowest answer 1.6x one request's time, slowest 503 91-94 ms on
    # a 2-core AVX2 CPU (benchmarks/README.md, "The model server under load")
    max_queue_wait_predictions: float | None = Field(0.75, gt=0)
    retry_after_s: int = Field(1, ge=1)
    max_body_bytes: int = Field(16 * 1024**2, ge=1024)  # larger request bodies: 413
    # added to the nice value of the threads that compute predictions (0: off; Linux), so that the
    # worker's event loop (503s, timeouts, health checks) gets a core the moment it needs one
    prediction_nice: int = Field(10, ge=0, le=19)

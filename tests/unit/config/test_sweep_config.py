"""The ``sweep:`` section: search dimensions, storage, and a space that names real params."""

import pytest

from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config import SearchDimension, SweepConfig, validate_params


def test_the_default_sweep_is_valid_and_searches_params_the_pipeline_reads():
    params = validate_params({})
    assert set(params.sweep.space) <= set(params.flat())
    assert params.sweep.storage is None and params.sweep.trials == 8


@pytest.mark.parametrize(
    ("dimension", "problem"),
    [
        ({"type": "float", "low": 1.0, "high": 0.5}, "must be below high"),
        ({"type": "log_float", "low": 0.0, "high": 1.0}, "log_float: low must be > 0"),
        ({"type": "int", "low": 1.5, "high": 3}, "int: low and high must be integers"),
        ({"type": "categorical"}, "categorical: give choices"),
        ({"type": "float", "low": 0.1}, "give low and high"),
    ],
)
def test_a_bad_dimension_is_refused_with_what_is_wrong(dimension, problem):
    with pytest.raises(ValueError, match=problem):
        SearchDimension(**dimension)


def test_a_space_key_that_is_not_a_param_is_named_in_the_error():
    with pytest.raises(ParamsError, match=r"sweep.space.train.learnig_rate: not a param the pipeline reads"):
        validate_params({"sweep": {"space": {"train.learnig_rate": {"type": "float", "low": 0.1, "high": 0.2}}}})


@pytest.mark.parametrize(
    ("storage", "problem"),
    [
        ("sqlite:///study.db", "sqlite cannot hold parallel trials"),
        ("redis://localhost", "expected journal:PATH or postgresql://HOST/DB"),
        ("postgresql://user:secret@db/optuna", "IMDB_MLOPS_SWEEP_STORAGE"),
    ],
)
def test_storage_that_cannot_share_a_study_or_holds_a_password_is_refused(storage, problem):
    with pytest.raises(ValueError, match=problem):
        SweepConfig(storage=storage)


def test_storage_without_a_password_is_accepted():
    assert SweepConfig(storage="postgresql://optuna@db.internal/optuna").storage.startswith("postgresql://")
    assert SweepConfig(storage="journal:/shared/sweeps/s.journal").storage.startswith("journal:")

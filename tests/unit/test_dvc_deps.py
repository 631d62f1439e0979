"""``dvc.yaml`` lists, per stage, exactly the project modules the stage executes (derived from the
imports by :mod:`imdb_mlops.orchestration.stage_deps`), and only the params it reads: a change to a
helper re-runs the stages that use it and no others. Mend with
``python -m imdb_mlops.orchestration.stage_deps --write``."""

from __future__ import annotations

import pytest
import yaml

from helpers import REPO_ROOT
from imdb_mlops.orchestration.stage_deps import STAGES, executed_modules, stage_deps

# params that only say where to log or how long to wait (tracking store, hub timeout), not what is computed
OPERATIONAL = ("tracking", "hub")


@pytest.fixture(scope="module")
def stages() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_it_executes(stages, stage):
    command, _ = STAGES[stage]
    assert f"imdb-mlops {command} " in stages[stage]["cmd"]  # the cmd runs this stage's entry function
    expected = set(stage_deps(stage))
    declared = {d for d in stages[stage]["deps"] if d.startswith("src/")}
    missing, stale = sorted(expected - declared), sorted(declared - expected)
    assert not missing and not stale, f"{stage}: add {missing}, remove {stale}; exact list: {sorted(expected)}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_leave_out_operational_settings(stages, stage):
    params = stages[stage].get("params", [])
    assert not [p for p in params if str(p).split(".")[0] in OPERATIONAL], params


def test_a_helper_change_reaches_every_stage_that_imports_it(stages):
    users = {
        stage for stage, (_, roots) in STAGES.items() if "imdb_mlops.modeling.truncation" in executed_modules(roots)
    }
    assert {"tokenize", "register"} <= users  # training ids and served ids are cut by the same code
    assert "ingest" not in users
    for stage in users:
        assert "src/imdb_mlops/modeling/truncation.py" in stages[stage]["deps"]

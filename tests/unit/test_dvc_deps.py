"""``dvc.yaml`` lists, per stage, exactly the project modules the stage executes, and only the params
it reads: a change to a helper re-runs the stages that use it and no others.

A stage's modules are derived from its entry module by following every ``imdb_mlops`` import
(module level and inside functions) through the source, plus the models-from-code file it
registers (the promotion gate runs it). The CLI is left out: its stage commands only parse options
and call the entry function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = "imdb_mlops"
# stage -> (the CLI command its cmd runs, entry modules)
STAGES = {
    "ingest": ("ingest", ["imdb_mlops.stages.ingest"]),
    "tokenize": ("tokenize", ["imdb_mlops.stages.tokenize"]),
    "train": ("train", ["imdb_mlops.stages.train"]),
    "evaluate": ("evaluate", ["imdb_mlops.stages.evaluate"]),
    "export": ("export", ["imdb_mlops.stages.export"]),
    "register": ("register", ["imdb_mlops.stages.register", "imdb_mlops.serving.classifier_model"]),
    "generate": ("build-generator", ["imdb_mlops.stages.generate", "imdb_mlops.serving.generator_model"]),
}
# files read at run time rather than imported: the module that reads them -> what it reads
DATA_DEPS = {"imdb_mlops.modeling.metrics": "src/imdb_mlops/modeling/evaluate_metrics"}
# params that only say where or how long to wait (tracking store, hub timeout), not what is computed
OPERATIONAL = ("tracking", "hub")


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(name: str) -> set[str]:
    """``imdb_mlops`` modules that ``name`` imports anywhere in its source (not followed)."""
    tree = ast.parse(module_file(name).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return {m for m in found if module_file(m)}


def executed_modules(roots: list[str]) -> set[str]:
    """The closure of ``roots`` under imports, with the packages (``__init__``) each import runs."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run first
        todo += imported_modules(name)
    return seen


def project_deps(names: set[str]) -> set[str]:
    """``dvc.yaml`` dep paths of ``names``: module files, without empty package files."""
    paths = set()
    for name in names:
        path = module_file(name)
        if path.name == "__init__.py" and not path.read_text().strip():
            continue
        paths.add(path.relative_to(REPO_ROOT).as_posix())
        if name in DATA_DEPS:
            paths.add(DATA_DEPS[name])
    return paths


@pytest.fixture(scope="module")
def stages() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_it_executes(stages, stage):
    command, roots = STAGES[stage]
    assert f"imdb-mlops {command} " in stages[stage]["cmd"]
    expected = project_deps(executed_modules(roots))
    declared = {d for d in stages[stage]["deps"] if d.startswith("src/")}
    missing, stale = sorted(expected - declared), sorted(declared - expected)
    assert not missing and not stale, f"{stage}: add {missing}, remove {stale}; exact list: {sorted(expected)}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_leave_out_operational_settings(stages, stage):
    params = stages[stage].get("params", [])
    assert not [p for p in params if str(p).split(".")[0] in OPERATIONAL], params


def test_a_helper_change_reaches_every_stage_that_imports_it(stages):
    users = {stage for stage, (_, roots) in STAGES.items() if "imdb_mlops.modeling.truncation" in executed_modules(roots)}
    assert {"tokenize", "register"} <= users  # training ids and served ids are cut by the same code
    assert "ingest" not in users
    for stage in users:
        assert "src/imdb_mlops/modeling/truncation.py" in stages[stage]["deps"]

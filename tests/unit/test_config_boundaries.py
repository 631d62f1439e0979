"""Where the whole config may travel: only the boundaries (stage entry modules, the CLI, the
orchestration, and the config room itself) take ``Params``; everything below takes its section.
Read from the source with ``ast`` (signatures and calls), so a new helper taking ``Params`` fails here."""

from __future__ import annotations

import ast

import pytest

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "imdb_mlops"
BOUNDARIES = ("stages", "cli", "orchestration", "config")


def modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def takes_params(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    return any(
        arg.annotation is not None and "Params" in ast.unparse(arg.annotation).split(".")[-1:] for arg in arguments
    )


def test_no_function_below_the_boundaries_takes_the_whole_params():
    offenders = [
        f"{name}.{node.name}"
        for name, tree in modules().items()
        if name.split(".")[1] not in BOUNDARIES
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and takes_params(node)
    ]
    assert offenders == []


def modules_reached(stage: str) -> set[str]:
    """The modules ``params`` is handed to from ``stages.<stage>`` (itself included), following
    calls that pass the name ``params`` to functions imported from other modules of the package."""
    trees = modules()
    reached, todo = set(), [f"imdb_mlops.stages.{stage}"]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        imported = {
            alias.asname or alias.name: node.module
            for node in ast.walk(trees[name])
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imdb_mlops")
            for alias in node.names
        }
        for node in ast.walk(trees[name]):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            passes = any(
                isinstance(a, ast.Name) and a.id == "params" for a in [*node.args, *(k.value for k in node.keywords)]
            )
            if passes and node.func.id in imported and imported[node.func.id] in trees:
                todo.append(imported[node.func.id])
    return reached


@pytest.mark.parametrize("stage", ["register", "generate"])
def test_a_stages_config_reaches_at_most_six_modules(stage):
    assert len(modules_reached(stage)) <= 6, sorted(modules_reached(stage))

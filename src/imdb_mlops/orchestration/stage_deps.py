"""The code each DVC stage executes, derived from the imports, and ``dvc.yaml``'s deps kept equal to it.

A stage's modules are its entry module (and the models-from-code file it registers, which the
promotion gate runs) followed through every ``imdb_mlops`` import, at module level or inside
functions, with the packages each import runs. The CLI is left out: its stage commands only parse
options and call the entry function. ``tests/unit/test_dvc_deps.py`` fails when ``dvc.yaml`` differs;

    python -m imdb_mlops.orchestration.stage_deps          # print what differs
    python -m imdb_mlops.orchestration.stage_deps --write  # rewrite the src/ deps of dvc.yaml
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

PACKAGE = "imdb_mlops"
SRC = Path(__file__).resolve().parents[2]  # the folder holding the package (src/)
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
# files read at run time rather than imported: the module that reads them -> the folder it reads
DATA_DEPS = {
    "imdb_mlops.modeling.metrics": "imdb_mlops/modeling/evaluate_metrics",
    "imdb_mlops.scoring.behaviour": "imdb_mlops/scoring/behaviour_suite.yaml",
}


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(name: str) -> set[str]:
    """``imdb_mlops`` modules that ``name`` imports anywhere in its source (not followed)."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))  # type: ignore[union-attr]
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


def stage_deps(stage: str, prefix: str = "src/") -> list[str]:
    """``dvc.yaml`` dep paths of ``stage``'s code: module files (no empty package files) and data."""
    paths = set()
    for name in executed_modules(STAGES[stage][1]):
        path = module_file(name)
        assert path is not None
        if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
            continue
        paths.add(prefix + path.relative_to(SRC).as_posix())
        if name in DATA_DEPS:
            paths.add(prefix + DATA_DEPS[name])
    return sorted(paths)


def rewrite(dvc_yaml: str) -> str:
    """``dvc_yaml`` with each stage's ``src/`` deps replaced by :func:`stage_deps` (other deps,
    comments and order kept)."""
    out: list[str] = []
    stage = None
    lines = dvc_yaml.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        header = re.match(r"^  (\w+):$", line)
        if header:
            stage = header.group(1) if header.group(1) in STAGES else None
        if stage and line == "    deps:":
            out.append(line)
            i += 1
            while i < len(lines) and lines[i].startswith("      - "):
                if not lines[i][8:].startswith("src/"):
                    out.append(lines[i])
                i += 1
            out += [f"      - {dep}" for dep in stage_deps(stage)]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--write", action="store_true", help="rewrite the file instead of reporting")
    args = parser.parse_args(argv)
    current = args.dvc_yaml.read_text(encoding="utf-8")
    wanted = rewrite(current)
    if args.write:
        args.dvc_yaml.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != current:
        print(f"{args.dvc_yaml}: src/ deps differ from the imports; run with --write", file=sys.stderr)
        return 1
    print(f"{args.dvc_yaml}: src/ deps match the imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())

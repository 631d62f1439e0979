"""Param overrides: dotted ``KEY=VALUE`` pairs and profile overlays, as ``dvc exp run -S`` takes them.

One path for the CLI (``imdb-mlops exp-run``), the Prefect training flow and the tests:
:func:`parse_assignments` reads ``KEY=VALUE`` strings, :func:`resolve_overrides` merges profiles
(``profiles/NAME.yaml``) and explicit overrides and validates the result against the project's
params (nothing written), and :func:`write_overrides` writes them into ``params.yaml`` with DVC's
own round-trip YAML writer (comments and order kept), as ``dvc exp run --set-param`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config.loading import PROFILES_DIR, load_params, read_yaml, validate_params
from imdb_mlops.config.schema import Params, flatten


def set_dotted(tree: MutableMapping[str, Any], dotted: str, value: Any, source: str = "-S") -> None:
    """``tree["a"]["b"] = value`` for ``dotted == "a.b"``, creating sections as needed."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, MutableMapping):
            raise ParamsError(f"{source} {dotted}: '{part}' is not a section")
        node = child
    node[leaf] = value


# A float as people type it: YAML 1.1 (PyYAML) reads ``3e-5`` and ``1E3`` as text, YAML 1.2 as numbers
FLOAT_LITERAL = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def parse_assignments(items: Iterable[str], option: str = "-S") -> dict[str, Any]:
    """``["train.epochs=2", ...]`` -> ``{"train.epochs": 2}``; values read as YAML scalars, and
    ``-S train.learning_rate=3e-5`` as the number it is."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"{option} {item}: expected KEY=VALUE")
        value = yaml.safe_load(raw) if raw else raw
        if isinstance(value, str) and FLOAT_LITERAL.fullmatch(raw.strip()):
            value = float(raw)
        overrides[key] = value
    return overrides


MACHINES_KEY = "machines"  # a profile's per-machine-kind overlays (not a params section)


def profile_overrides(
    project_dir: Path, names: Iterable[str], option: str = "--profile", kind: str | None = None
) -> dict[str, Any]:
    """The dotted overrides of ``profiles/NAME.yaml`` for each name, later ones winning; a profile's
    ``machines.<kind>.params`` for this machine's kind (``kind``, else the capability check) come
    after its own sections."""
    merged: dict[str, Any] = {}
    for path, tree in read_profiles(project_dir, names, option):
        machines = tree.pop(MACHINES_KEY, None) or {}
        sweep = tree.get("sweep")
        space = sweep.pop("space", None) if isinstance(sweep, dict) else None  # its keys are dotted names
        merged.update(flatten(tree))
        if space is not None:
            merged["sweep.space"] = space
        if machines:
            merged.update(flatten(machine_entry(path, machines, kind).get("params") or {}))
    return merged


def read_profiles(project_dir: Path, names: Iterable[str], option: str = "--profile") -> list[tuple[Path, dict]]:
    """(path, mapping) of each named profile, in order."""
    folder = project_dir / PROFILES_DIR
    profiles = []
    for name in names:
        path = folder / f"{name}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
            raise ParamsError(f"{option}: no profile '{name}' ({path} missing; known: {known})")
        tree = read_yaml(path) or {}
        if not isinstance(tree, dict):
            raise ParamsError(f"{path}: must be a mapping of sections")
        profiles.append((path, dict(tree)))
    return profiles


def machine_entry(path: Path, machines: Any, kind: str | None = None) -> dict[str, Any]:
    """The ``machines`` entry of a profile for ``kind`` (default: this machine's), or ``{}``."""
    from imdb_mlops.modeling.capabilities import MACHINE_KINDS, machine_kind

    if not isinstance(machines, dict) or not set(machines) <= set(MACHINE_KINDS):
        raise ParamsError(f"{path}: {MACHINES_KEY} must map machine kinds ({', '.join(MACHINE_KINDS)}) to entries")
    entry = machines.get(kind or machine_kind()) or {}
    if not isinstance(entry, dict) or not set(entry) <= {"params", "expected_minutes"}:
        raise ParamsError(f"{path}: each {MACHINES_KEY} entry holds params and expected_minutes only")
    return entry


def expected_minutes(project_dir: Path, names: Iterable[str], kind: str | None = None) -> float | None:
    """What the last of the named profiles that says so expects a run to take on this machine kind."""
    expected = None
    for path, tree in read_profiles(project_dir, names):
        entry = machine_entry(path, tree.get(MACHINES_KEY) or {}, kind)
        expected = entry.get("expected_minutes", expected)
    return expected


def with_overrides(path: Path, overrides: dict[str, Any]) -> Params:
    """Validate ``path`` with dotted-key ``overrides`` applied (nothing is written)."""
    tree = read_yaml(path) or {}
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return validate_params(tree, source=f"{path} with overrides")


def resolve_overrides(
    project_dir: Path, overrides: dict[str, Any], profiles: Iterable[str] = (), option: str = "profiles"
) -> tuple[dict[str, Any], Params]:
    """Profiles, then explicit dotted-key overrides, validated against the project's params;
    ParamsError (nothing written) on an unknown key or a bad value. Returns the merged
    overrides and the params they give."""
    merged = profile_overrides(project_dir, profiles, option)
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise ParamsError(f"overrides: keys must be dotted param names like 'train.learning_rate' (got {key!r})")
        merged[key] = value
    return merged, with_overrides(project_dir / "params.yaml", merged)


def write_overrides(params_path: Path, overrides: dict[str, Any]) -> None:
    """Write validated overrides into ``params_path`` as ``dvc exp run --set-param`` does."""
    if not overrides:
        return
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(params_path)) as data:
        for dotted, value in overrides.items():
            set_dotted(data, dotted, value)
    load_params(params_path)  # still valid as written


def as_yaml_scalar(value: Any) -> str:
    """``value`` as the text of a ``-S KEY=VALUE`` argument that reads back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):  # a profile's list (export.int8_keep_fp32): [a,b], as DVC's -S reads lists
        return "[" + ",".join(as_yaml_scalar(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):  # 3e-05 -> 3.0e-05: a number to YAML 1.1 (PyYAML) as to DVC's YAML 1.2
        mantissa, e, exponent = repr(value).partition("e")
        return f"{mantissa if '.' in mantissa or not e else mantissa + '.0'}{e}{exponent}"
    text = str(value)
    try:
        reads_back = yaml.safe_load(text) == text
    except yaml.YAMLError:
        reads_back = False
    return text if reads_back else json.dumps(text)  # "123", "true", "a: b" stay strings (JSON is YAML)

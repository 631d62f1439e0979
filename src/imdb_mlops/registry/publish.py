"""One path from a model folder to a registered version, for the classifier and the generator alike.

:func:`log_and_register` logs an MLflow pyfunc written as code (models-from-code: the model file and
this package go in as code, nothing is pickled) into an existing run, registers it as a new version
with tags and a description, and waits until the version is READY.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console

from imdb_mlops.common.errors import PipelineError

console = Console(stderr=True)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the imdb_mlops package, logged as the model's code


@dataclass
class ModelPackage:
    """What a registered version is made of."""

    name: str  # artifact path inside the run ("model", "generator")
    python_model: Path  # the models-from-code file (imdb_mlops/serving/...)
    artifacts: dict[str, str]
    signature: Any
    input_example: Any
    requirements: list[str]
    extra_artifacts: dict[str, Path] = field(default_factory=dict)  # logged beside, e.g. the PyTorch checkpoint


def pinned_requirements(packages: tuple[str, ...]) -> list[str]:
    """``package==installed version`` pins for a logged model's environment."""
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def ensure_registered_model(client: Any, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)


def wait_until_ready(client: Any, name: str, model_version: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get_model_version(name, model_version).status != "READY":
        if time.monotonic() > deadline:
            raise PipelineError(f"registry: {name} version {model_version} not READY after {timeout_s:.0f} s")
        time.sleep(0.5)


def log_and_register(
    client: Any,
    run_id: str,
    package: ModelPackage,
    registered_model: str,
    tags: dict[str, str],
    description: str | None = None,
) -> Any:
    """Log ``package`` into run ``run_id`` (re-opened unless it is the active run) and register it
    as a new version of ``registered_model``; returns the READY model version."""
    import mlflow

    warnings.filterwarnings("ignore", message=r"(?s).*Add type hints to the `predict` method")
    active = mlflow.active_run()
    run = contextlib.nullcontext() if active and active.info.run_id == run_id else mlflow.start_run(run_id=run_id)
    with tempfile.TemporaryDirectory(prefix="register-") as tmp, run:
        code_dir = Path(tmp) / "imdb_mlops"
        shutil.copytree(PACKAGE_DIR, code_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        console.print(f"Logging the {package.name} pyfunc into run {run_id[:8]} ...")
        info = mlflow.pyfunc.log_model(
            name=package.name,
            python_model=str(package.python_model),
            artifacts=package.artifacts,
            code_paths=[str(code_dir)],
            signature=package.signature,
            input_example=package.input_example,
            pip_requirements=package.requirements,
        )
        for artifact_path, folder in package.extra_artifacts.items():
            mlflow.log_artifacts(str(folder), artifact_path)
    model_version = mlflow.register_model(info.model_uri, registered_model, tags=tags)
    if description is not None:
        client.update_model_version(registered_model, model_version.version, description=description)
    wait_until_ready(client, registered_model, model_version.version)
    return model_version

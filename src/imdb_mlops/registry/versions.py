"""Finding things in the MLflow registry: the client, registered models, versions by number or
alias, model URIs, loading a registered pyfunc, and the files logged beside a version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.config import RegistryConfig, TrackingConfig
from imdb_mlops.registry.tracking import ensure_tracking_reachable, tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"


def connect(tracking: TrackingConfig, project_dir: Path = Path(".")) -> Any:
    """An MlflowClient on the project's tracking store (server checked first). The commands that
    only read the registry call this: a missing SQLite store is an error, not a new empty file."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(project_dir)
    ensure_tracking_reachable(uri, tracking.timeout_s)
    store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if store is not None and not store.exists():
        raise PipelineError(
            f"{uri}: no tracking store there yet; run the pipeline first (dvc repro) or set MLFLOW_TRACKING_URI"
        )
    mlflow.set_tracking_uri(uri)  # the registry follows the tracking URI
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registered_model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise PipelineError(
            f"registry: no registered model '{name}' at {client.tracking_uri}; run the pipeline (dvc repro) first"
        ) from None


def all_versions(client: Any, name: str) -> list[Any]:
    """Every version of ``name``, oldest first, each with its aliases."""
    aliases: dict[str, list[str]] = {}
    for alias, number in registered_model(client, name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    found = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    for mv in found:  # search results carry no aliases
        mv._aliases = sorted(aliases.get(str(mv.version), []))
    return found


def versions_of_run(client: Any, name: str, run_id: str) -> list[Any]:
    return [
        v for v in client.search_model_versions(f"name='{name}'") if run_id in (v.run_id, v.tags.get("training_run_id"))
    ]


def get_version(client: Any, name: str, ref: str) -> Any:
    """A version by number or alias (``3``, ``champion``, ``@champion``)."""
    from mlflow.exceptions import MlflowException

    ref = ref.lstrip("@")
    registered_model(client, name)
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        return client.get_model_version_by_alias(name, ref)
    except MlflowException:
        known = ", ".join(str(v.version) for v in all_versions(client, name)) or "none"
        aliases = ", ".join(sorted(registered_model(client, name).aliases)) or "none"
        raise PipelineError(
            f"registry: {name} has no version or alias '{ref}' (versions: {known}; aliases: {aliases})"
        ) from None


def resolve_model_uri(ref: str | None, name: str) -> str:
    """``None``/``champion``/``@alias``/``3``/``models:/...``/a local folder -> a model URI."""
    if ref is None:
        return f"models:/{name}@{CHAMPION}"
    if ref.startswith(("models:/", "runs:/", "file:", "mlflow-artifacts:")) or Path(ref).exists():
        return ref
    ref = ref.lstrip("@")
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def version_of_uri(client: Any, uri: str, name: str) -> str | None:
    """The version number a ``models:/<name>...`` URI points at now (None for other URIs); a clear
    error when there is no such version or alias yet."""
    prefix = f"models:/{name}"
    if not uri.startswith(prefix):
        return None
    return str(get_version(client, name, uri[len(prefix) :].lstrip("/@")).version)


def load_pyfunc(model_uri: str) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise PipelineError(f"{model_uri}: cannot load the model: {first_line(exc)}") from None


def pytorch_checkpoint(client: Any, name: str, ref: str, dest: Path) -> Path:
    """The PyTorch checkpoint logged beside a registered version (``pytorch_model/`` of its training
    run), downloaded into ``dest``."""
    from mlflow.exceptions import MlflowException

    version = get_version(client, name, ref)
    run_id = version.tags.get("training_run_id") or version.run_id
    try:
        return Path(client.download_artifacts(run_id, "pytorch_model", str(dest)))
    except (MlflowException, OSError):
        raise PipelineError(
            f"--model: {name} version {version.version} has no PyTorch checkpoint (pytorch_model/ in run "
            f"{run_id}) to read attention from; pass a checkpoint folder (models/classifier)"
        ) from None


def resolve_checkpoint(
    registry: RegistryConfig, tracking: TrackingConfig, ref: str | None, dest: Path
) -> tuple[Path, str]:
    """A PyTorch classifier checkpoint and how to name it: ``ref`` as an existing folder, else a
    version or alias of ``registry.model_name`` (default ``champion``) downloaded into ``dest``."""
    if ref is not None and Path(ref).exists():
        return Path(ref), ref
    client = connect(tracking)
    name = registry.model_name
    ref = (ref or CHAMPION).lstrip("@")
    return pytorch_checkpoint(client, name, ref, dest), f"{name}/{ref}" if ref.isdigit() else f"{name}@{ref}"

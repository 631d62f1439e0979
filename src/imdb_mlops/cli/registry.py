"""``imdb-mlops registry ...``: versions, promotion, rollback, lineage of a registered model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from imdb_mlops.cli.app import registry_app
from imdb_mlops.cli.common import (
    DEFAULT_PARAMS_PATH,
    JsonOption,
    ModelNameOption,
    ParamsOption,
    fmt,
    handles_errors,
    utc,
    wide_console,
)
from imdb_mlops.config import load_params


def _registry(params: Path, name: str | None) -> tuple[Any, str]:
    from imdb_mlops.registry.versions import connect

    loaded = load_params(params)
    return connect(loaded.tracking), name or loaded.registry.model_name


@registry_app.command("versions")
@handles_errors
def registry_versions(params: ParamsOption = DEFAULT_PARAMS_PATH, name: ModelNameOption = None) -> None:
    """List versions with their aliases, test metrics, serving variant and gate decision."""
    from imdb_mlops.registry.versions import all_versions

    client, model = _registry(params, name)
    table = Table(title=f"{model} ({client.tracking_uri})")
    for column in ("version", "aliases", "created (UTC)", "accuracy", "F1", "ROC-AUC", "variant", "gate", "run"):
        table.add_column(column, justify="right" if column in ("version", "accuracy", "F1", "ROC-AUC") else "left")
        table.columns[-1].no_wrap = column != "aliases"
    for mv in all_versions(client, model):
        tags = mv.tags
        created = utc(mv.creation_timestamp)
        table.add_row(
            str(mv.version),
            ", ".join(sorted(mv.aliases)) or "-",
            created,
            fmt(tags.get("test.accuracy")),
            fmt(tags.get("test.f1")),
            fmt(tags.get("test.roc_auc")),
            tags.get("serving.variant", "-"),
            tags.get("gate.action", "-").replace("_", " "),
            (tags.get("training_run_id") or mv.run_id or "-")[:8],
        )
    wide_console().print(table)


@registry_app.command("promote")
@handles_errors
def registry_promote(
    version: Annotated[str, typer.Argument(help="Version number or alias to make champion.")],
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    name: ModelNameOption = None,
    reason: Annotated[str, typer.Option(help="Recorded on the version.")] = "promoted from the CLI",
) -> None:
    """Move alias champion to a version (what the MLflow UI's alias editor does, plus history)."""
    from imdb_mlops.registry.aliases import promote

    client, model = _registry(params, name)
    previous, current = promote(client, model, version, reason)
    typer.echo(f"{model}: champion {previous or '(none)'} -> {current}")


@registry_app.command("rollback")
@handles_errors
def registry_rollback(params: ParamsOption = DEFAULT_PARAMS_PATH, name: ModelNameOption = None) -> None:
    """Move alias champion back to the version that held it before."""
    from imdb_mlops.registry.aliases import rollback

    client, model = _registry(params, name)
    previous, current = rollback(client, model)
    typer.echo(f"{model}: champion {previous} -> {current} (rolled back)")


@registry_app.command("history")
@handles_errors
def registry_history(
    params: ParamsOption = DEFAULT_PARAMS_PATH, name: ModelNameOption = None, as_json: JsonOption = False
) -> None:
    """Every move of alias champion: when, to which version, from where (register stage, CLI,
    rollback, MLflow UI/REST through the webhook receiver)."""
    from imdb_mlops.registry.history import HISTORY_TAG, parse_history
    from imdb_mlops.registry.store_snapshot import read_snapshot
    from imdb_mlops.registry.tracking import tracking_uri
    from imdb_mlops.registry.versions import CHAMPION

    model = name or load_params(params).registry.model_name
    snapshot = read_snapshot(tracking_uri(), model)  # a SQLite store read directly: no MLflow start-up
    if snapshot is not None:
        entries, champion = parse_history(snapshot.tags.get(HISTORY_TAG)), snapshot.aliases.get(CHAMPION)
    else:
        from imdb_mlops.registry.aliases import current_champion
        from imdb_mlops.registry.history import history_entries

        client, model = _registry(params, name)
        entries, champion = history_entries(client, model), current_champion(client, model)
    if as_json:
        typer.echo(json.dumps([entry.model_dump() for entry in entries], indent=2))
        return
    table = Table(title=f"{model}: champion history (now {champion or 'none'})")
    for column in ("at (UTC)", "action", "version", "previous", "source", "reason", "Prefect event"):
        table.add_column(column, justify="right" if column in ("version", "previous") else "left")
    for entry in entries:
        table.add_row(
            entry.at.replace("T", " ").removesuffix("+00:00") or "-",
            entry.action,
            entry.version or "-",
            entry.previous or "-",
            entry.source,
            entry.reason or "-",
            entry.prefect_event or "-",
        )
    wide_console().print(table)


@registry_app.command("lineage")
@handles_errors
def registry_lineage(
    version: Annotated[str, typer.Argument(help="Version number or alias.")] = "champion",
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    name: ModelNameOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where a version came from: git commit, data hashes, training run, params, datasets."""
    from imdb_mlops.registry.lineage import lineage

    client, model = _registry(params, name)
    info = lineage(client, model, version)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    table = Table(title=f"{model} version {info['version']} ({', '.join(info['aliases']) or 'no alias'})")
    table.add_column("what", justify="left")
    table.add_column("value", justify="left", overflow="fold")
    for key in ("created", "training_run_id", "experiment_id", "run_status", "source"):
        if key in info:
            table.add_row(key, str(info[key]))
    for key, value in info["tags"].items():
        table.add_row(f"tag {key}", value)
    for dataset in info.get("datasets", []):
        table.add_row(f"dataset {dataset['name']}", f"digest {dataset['digest']}")
    for key, value in info.get("params", {}).items():
        table.add_row(f"param {key}", value)
    wide_console().print(table)

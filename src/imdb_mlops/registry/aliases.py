"""Aliases of a registered model: who is ``champion``, how it moves, and how it moves back.

Every move made by the pipeline (register stage, CLI) is remembered in the registered model's tag
``champion_history`` (JSON list of versions), which :func:`rollback` walks back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.registry.versions import CHAMPION, all_versions, get_version, registered_model

HISTORY_TAG = "champion_history"  # registered-model tag: JSON list of versions that held champion


def current_champion(client: Any, name: str) -> str | None:
    aliases = registered_model(client, name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def champion_history(client: Any, name: str) -> list[str]:
    raw = registered_model(client, name).tags.get(HISTORY_TAG)
    try:
        history = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        history = []
    return [str(v) for v in history]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def set_champion(client: Any, name: str, target: str, reason: str) -> None:
    """Point ``champion`` at ``target`` and remember the move (for rollback)."""
    client.set_registered_model_alias(name, CHAMPION, target)
    history = champion_history(client, name)
    if not history or history[-1] != str(target):
        history.append(str(target))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-100:]))
    client.set_model_version_tag(name, target, "promoted_at", _now())
    client.set_model_version_tag(name, target, "promotion_reason", reason)


def promote(client: Any, name: str, ref: str, reason: str = "promoted from the CLI") -> tuple[str | None, str]:
    """Move ``champion`` to version ``ref``; returns (previous champion, new champion)."""
    target = str(get_version(client, name, ref).version)
    previous = current_champion(client, name)
    set_champion(client, name, target, reason)
    return previous, target


def rollback(client: Any, name: str) -> tuple[str, str]:
    """Move ``champion`` back to the version that held it before; returns (from, to)."""
    current = current_champion(client, name)
    if current is None:
        raise PipelineError(f"registry: {name} has no champion to roll back from")
    history = champion_history(client, name)
    # Drop the current champion's latest stint; the entry before it is the previous champion.
    while history and history[-1] == current:
        history.pop()
    existing = {str(v.version) for v in all_versions(client, name)}
    deleted = []
    while history and history[-1] not in existing:  # a version deleted since it was champion
        deleted.append(history.pop())
    if not history:
        gone = (
            f" (the earlier champion{'s' if len(deleted) > 1 else ''} {', '.join(deleted)} deleted)" if deleted else ""
        )
        raise PipelineError(
            f"registry: {name} version {current} has no earlier champion to roll back to{gone}; "
            "promote a version instead: imdb-mlops registry promote N"
        )
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, current, "rolled_back_at", _now())
    return current, target

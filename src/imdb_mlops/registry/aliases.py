"""Aliases of a registered model: who is ``champion``, how it moves, and how it moves back.

Every move is recorded in the champion history (:mod:`imdb_mlops.registry.history`) before the
alias moves, under the registry lock; :func:`rollback` walks that history back, UI moves included
(the webhook receiver records those).
"""

from __future__ import annotations

from typing import Any

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.registry.history import (
    HistoryEntry,
    Source,
    append_entry,
    champion_chain,
    history_entries,
    now_utc,
    registry_lock,
    write_entries,
)
from imdb_mlops.registry.versions import CHAMPION, all_versions, get_version, registered_model


def current_champion(client: Any, name: str) -> str | None:
    aliases = registered_model(client, name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def champion_history(client: Any, name: str) -> list[str]:
    """The versions that held ``champion``, in order, rollbacks undone (what rollback walks back)."""
    return champion_chain(history_entries(client, name))


def _move(client: Any, name: str, entry: HistoryEntry) -> None:
    """Record ``entry``, then move the alias; the record is taken back if the move fails."""
    before = append_entry(client, name, entry)
    try:
        client.set_registered_model_alias(name, CHAMPION, entry.version)
    except Exception:
        write_entries(client, name, before)
        raise


def set_champion(
    client: Any,
    name: str,
    target: str,
    reason: str,
    source: Source = "cli",
    expected: str | None = None,
    check_expected: bool = False,
) -> bool:
    """Point ``champion`` at ``target`` and record the move. With ``check_expected``, the move is
    made only while ``champion`` is still ``expected`` (compare-and-set: a promotion made in the UI
    while a gate was scoring wins); returns whether the alias moved."""
    with registry_lock(client, name):
        previous = current_champion(client, name)
        if check_expected and previous != expected:
            return False
        _move(client, name, HistoryEntry(version=str(target), previous=previous, source=source, reason=reason))
    client.set_model_version_tag(name, target, "promoted_at", now_utc())
    client.set_model_version_tag(name, target, "promotion_reason", reason)
    return True


def promote(client: Any, name: str, ref: str, reason: str = "promoted from the CLI") -> tuple[str | None, str]:
    """Move ``champion`` to version ``ref``; returns (previous champion, new champion)."""
    target = str(get_version(client, name, ref).version)
    previous = current_champion(client, name)
    set_champion(client, name, target, reason, source="cli")
    return previous, target


def rollback(client: Any, name: str) -> tuple[str, str]:
    """Move ``champion`` back to the version that held it before; returns (from, to)."""
    with registry_lock(client, name):
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
            plural = "s" if len(deleted) > 1 else ""
            gone = f" (the earlier champion{plural} {', '.join(deleted)} deleted)" if deleted else ""
            raise PipelineError(
                f"registry: {name} version {current} has no earlier champion to roll back to{gone}; "
                "promote a version instead: imdb-mlops registry promote N"
            )
        target = history[-1]
        entry = HistoryEntry(
            action="rollback",
            version=target,
            previous=current,
            source="rollback",
            reason="imdb-mlops registry rollback",
        )
        _move(client, name, entry)
    client.set_model_version_tag(name, current, "rolled_back_at", now_utc())
    return current, target

"""The champion history of a registered model: every move of alias ``champion``, who made it and
from where, kept in the registered model's tag ``champion_history`` (a JSON list of entries).

An entry is written by whoever moves the alias: the register stage (``register-stage``), the
generate stage (``generate-stage``), the CLI (``cli``), a rollback (``rollback``), or the webhook
receiver for moves made in the MLflow UI or its REST API (``ui/rest``). The moves the pipeline makes
are recorded *before* the alias moves, under :func:`registry_lock`, so the webhook event that MLflow
sends for the same move finds it recorded and adds nothing.

:func:`champion_chain` replays the entries into the stack of champions that
:func:`~imdb_mlops.registry.aliases.rollback` walks back: a move pushes its version, a rollback pops
back to its target. Entries of the first format (a bare list of version numbers) still read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from imdb_mlops.registry.versions import registered_model

HISTORY_TAG = "champion_history"
MAX_ENTRIES = 200  # the tag keeps the newest entries (a registry tag holds up to 100,000 characters)
Source = Literal["register-stage", "generate-stage", "cli", "rollback", "ui/rest", "unknown"]
Action = Literal["set", "rollback", "deleted"]


class HistoryEntry(BaseModel):
    """One move of ``champion``."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    action: Action = "set"
    version: str | None  # the new champion (None when the alias was deleted)
    previous: str | None = None  # the champion before the move, as far as it was known
    source: Source = "unknown"
    at: str = ""  # UTC, ISO 8601
    reason: str = ""
    delivery_id: str | None = None  # the MLflow webhook delivery it was recorded from
    prefect_event: Literal["emitted", "pending"] | None = None  # the Prefect event about it (receiver)


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def history_entries(client: Any, name: str) -> list[HistoryEntry]:
    """Every recorded move, oldest first (unreadable tags read as no history)."""
    return parse_history(registered_model(client, name).tags.get(HISTORY_TAG))


def parse_history(raw: str | None) -> list[HistoryEntry]:
    """The entries of a history tag's value (unreadable values read as no history)."""
    try:
        items = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        return []
    entries = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str | int):  # the first format: a list of versions
            entries.append(HistoryEntry(version=str(item)))
        elif isinstance(item, dict):
            with contextlib.suppress(ValueError):
                entries.append(HistoryEntry.model_validate(item))
    return entries


def champion_chain(entries: list[HistoryEntry]) -> list[str]:
    """The champions in the order they took over, rollbacks undone: what rollback walks back."""
    chain: list[str] = []
    for entry in entries:
        if entry.version is None:
            continue
        if entry.action == "rollback":
            while chain and chain[-1] != entry.version:
                chain.pop()
            if not chain:
                chain.append(entry.version)
        elif not chain or chain[-1] != entry.version:
            chain.append(entry.version)
    return chain


def recorded_champion(entries: list[HistoryEntry]) -> str | None:
    """The champion the history says holds the alias now (None after a deletion)."""
    return entries[-1].version if entries else None


def write_entries(client: Any, name: str, entries: list[HistoryEntry]) -> None:
    payload = [
        entry.model_dump(exclude_defaults=True) | {"id": entry.id, "version": entry.version}
        for entry in entries[-MAX_ENTRIES:]
    ]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(payload))


def append_entry(client: Any, name: str, entry: HistoryEntry) -> list[HistoryEntry]:
    """Add ``entry`` (stamped now unless it has a time); returns the history before it. Call it
    under :func:`registry_lock`."""
    before = history_entries(client, name)
    stamped = entry.model_copy(update={"at": entry.at or now_utc()})
    write_entries(client, name, [*before, stamped])
    return before


def lock_path(tracking_uri: str, name: str) -> Path:
    """One lock file per (tracking store, registered model) on this machine."""
    digest = hashlib.sha256(f"{tracking_uri}\0{name}".encode()).hexdigest()[:16]
    folder = Path(os.environ.get("IMDB_MLOPS_LOCK_DIR", Path(tempfile.gettempdir()) / "imdb-mlops-locks"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"registry-{digest}.lock"


@contextlib.contextmanager
def registry_lock(client: Any, name: str, timeout_s: float = 120) -> Iterator[None]:
    """Serialise alias moves and history writes of one registered model among the processes of
    this machine (register stage, CLI, webhook receiver)."""
    from filelock import FileLock, Timeout

    from imdb_mlops.common.errors import PipelineError

    path = lock_path(str(client.tracking_uri), name)
    try:
        with FileLock(str(path), timeout=timeout_s):
            yield
    except Timeout:
        raise PipelineError(
            f"registry: {name}: another process has held the alias lock ({path.name}) for {timeout_s:.0f} s; "
            "try again when it is done"
        ) from None


def update_entry(client: Any, name: str, entry_id: str, **changes: Any) -> None:
    """Change fields of the entry ``entry_id`` (under :func:`registry_lock`)."""
    entries = history_entries(client, name)
    write_entries(client, name, [e.model_copy(update=changes) if e.id == entry_id else e for e in entries])

"""A registered model's tags and aliases read straight from a SQLite tracking store, for the read
commands (``registry history``): answered in a fraction of a second, where starting MLflow's
client (its imports, the store's schema check) takes seconds.

Read-only (the file is opened ``mode=ro``: no migration, no lock held), and only for what MLflow's
schema has kept the same since 2.3 (``registered_models``, ``registered_model_tags``,
``registered_model_aliases``). None for anything else (a tracking server, a missing store or
model, tables not as expected): the caller then asks MLflow, which also gives the errors.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSnapshot:
    tags: dict[str, str]
    aliases: dict[str, str]  # alias -> version


def read_snapshot(uri: str, name: str) -> ModelSnapshot | None:
    if not uri.startswith("sqlite:///"):
        return None
    store = Path(uri.removeprefix("sqlite:///"))
    if not store.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as db:
            if db.execute("SELECT 1 FROM registered_models WHERE name = ?", (name,)).fetchone() is None:
                return None
            tags = db.execute("SELECT key, value FROM registered_model_tags WHERE name = ?", (name,)).fetchall()
            aliases = db.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,)
            ).fetchall()
    except sqlite3.Error:
        return None
    return ModelSnapshot({k: v for k, v in tags}, {alias: str(version) for alias, version in aliases})

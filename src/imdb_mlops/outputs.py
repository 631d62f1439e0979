"""Stage outputs that appear whole or not at all.

A stage writes every output into a temporary sibling (same file system) and the outputs are
moved into place only after all of them were written; on any error the temporaries are removed
and the previous outputs (if any) are left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_outputs(*targets: Path) -> Iterator[list[Path]]:
    """Yield one temporary path per target; move them all into place on success.

    The temporary paths do not exist yet: create a file or a folder there as the stage needs.
    """
    staged: list[Path] = []
    holders: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            holders.append(holder)
            staged.append(holder / target.name)
        yield staged
        for tmp, target in zip(staged, targets, strict=True):
            if not tmp.exists():
                raise FileNotFoundError(f"stage did not write {target}")
        for tmp, target in zip(staged, targets, strict=True):
            _remove(target)
            os.replace(tmp, target)
    finally:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

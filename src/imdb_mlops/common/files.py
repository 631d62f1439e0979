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

from imdb_mlops.common.errors import PipelineError


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


def read_json(path: Path, advice: str | None = None) -> dict[str, Any]:
    """A JSON file written by a stage. Missing: a one-line error with ``advice`` (what to run), or
    ``{}`` when no advice is given (the file is optional); invalid JSON is always an error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if advice is None:
            return {}
        raise PipelineError(f"{path}: missing; {advice}") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n" for r in records)
    path.write_text("".join(lines), encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

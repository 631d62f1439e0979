"""Stage outputs that appear whole or not at all, and never over something the stage did not make.

A stage writes every output into a temporary sibling (same file system); only after all of them
were written are they moved into place, each by an atomic swap: the old output is renamed to a
backup, the new one renamed into place, the backup deleted. A kill at any point leaves each output
either old or new: the next run puts back a backup whose output is missing and deletes the other
leftovers (backups and temporaries of processes that are gone). On an error the temporaries are
removed and the previous outputs are left untouched.

An existing path is replaced only when it is a previous output of the same command: a file that
the command wrote or that its DVC stage declares (:mod:`~imdb_mlops.common.output_owners`); a
folder with this owner's marker (``.imdb-mlops-output``, written into every output folder), an
empty folder, or a folder whose entries are all entries of the new output (an output of an earlier
version, or pulled by DVC, which ignores the marker: ``.dvcignore``). Anything else (``--out
reports``, ``--report reports``, ``--report README.md``, ``--out data``, ``--out .``) is refused
with one line; :func:`refuse_foreign_targets` says so before a stage starts its work.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.output_owners import may_replace, record_owner

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
MARKER = ".imdb-mlops-output"  # in every output folder: {"owner": <command>, "output": <name>}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (an exited child not yet waited for, a zombie,
    does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): it answered the signal
        return True


def _leftovers(target: Path) -> list[tuple[Path, int, bool]]:
    """Temporaries and backups of ``target`` left by a process: (path, pid, is a backup)."""
    found = []
    for path in target.parent.glob(f".{target.name}.*"):
        parts = path.name[len(target.name) + 2 :].split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[-1] in ("tmp", "old"):
            found.append((path, int(parts[0]), parts[-1] == "old"))
    return found


def temporary_beside(target: Path) -> Path:
    """A new empty folder beside ``target``, named as :func:`recover` finds the temporaries of a
    process that is gone (``.<name>.<pid>.<random>.tmp``)."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))


def recover(target: Path) -> None:
    """Finish what a killed run left around ``target``: put back the backup of a missing output,
    delete other backups and temporaries of processes that are gone."""
    for path, pid, backup in sorted(_leftovers(target), key=lambda item: not item[2]):
        if pid == os.getpid() or process_alive(pid):
            continue
        if backup and not target.exists() and not target.is_symlink():
            os.replace(path, target)  # killed between the two renames: the old output comes back
        else:
            _remove(path)


def _owned_by(path: Path, owner: str) -> bool:
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return marker.get("owner") == owner and marker.get("output") == path.name


def check_replaceable(target: Path, new: Path, owner: str) -> None:
    """A one-line PipelineError unless ``target`` may be replaced by ``new`` (see the module doc)."""
    if not target.exists() and not target.is_symlink():
        return
    refuse_foreign_targets(target, owner=owner)  # not plain, a file it did not write, another's folder
    what = f"{target}: exists and is not an output of `imdb-mlops {owner}`"
    if new.is_dir() != target.is_dir():
        kinds = ("a folder", "a file") if target.is_dir() else ("a file", "a folder")
        raise PipelineError(f"{what} ({kinds[0]} where {kinds[1]} is written); choose another path")
    if target.is_file() or _owned_by(target, owner):
        return
    extra = sorted({p.name for p in target.iterdir()} - {p.name for p in new.iterdir()} - {MARKER})
    if extra:
        shown = ", ".join(extra[:4]) + (f" and {len(extra) - 4} more" if len(extra) > 4 else "")
        raise PipelineError(f"{what} (it holds {shown}); choose another path or remove it yourself")


def refuse_foreign_targets(*targets: Path, owner: str) -> None:
    """Before any work: a one-line PipelineError for a target that is the working folder (or above
    it), not a plain file or folder, a file ``owner`` may not replace, or another command's folder.
    (The last word is :func:`check_replaceable`'s, with the new output in hand.)"""
    here = Path.cwd().resolve()
    for target in targets:
        resolved = target.resolve()
        if not resolved.name or resolved == here or resolved in here.parents:
            raise PipelineError(f"{target}: is the working folder or one above it; give an output path inside it")
        if not target.exists() and not target.is_symlink():
            continue
        what = f"{target}: exists and is not an output of `imdb-mlops {owner}`"
        if target.is_symlink() or not (target.is_dir() or target.is_file()):
            raise PipelineError(f"{what} (not a plain file or folder); choose another path or remove it")
        if target.is_file() and not may_replace(target, owner):
            raise PipelineError(f"{what} (a file it did not write); choose another path or remove it yourself")
        if target.is_dir() and (target / MARKER).exists() and not _owned_by(target, owner):
            raise PipelineError(f"{what} (another command's output); choose another path")


def _swap(tmp: Path, target: Path) -> None:
    """Old -> backup, new -> target, delete backup: each step one rename."""
    backup = target.parent / f".{target.name}.{os.getpid()}.old"
    had_old = target.exists() or target.is_symlink()
    if had_old:
        os.replace(target, backup)
    os.replace(tmp, target)
    if had_old:
        _remove(backup)


@contextlib.contextmanager
def atomic_outputs(*targets: Path, owner: str) -> Iterator[list[Path]]:
    """Yield one temporary path per target; move them all into place on success.

    The temporary paths do not exist yet: create a file or a folder there as the stage needs.
    ``owner`` is the command that writes them (``ingest``, ``score``, ...): output folders carry it
    in their marker, and a folder with another owner's marker is not replaced.
    """
    refuse_foreign_targets(*targets, owner=owner)
    staged: list[Path] = []
    holders: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            recover(target)
            holder = temporary_beside(target)
            holders.append(holder)
            staged.append(holder / target.name)
        yield staged
        for tmp, target in zip(staged, targets, strict=True):
            if not tmp.exists():
                raise FileNotFoundError(f"stage did not write {target}")
            if tmp.is_dir():
                write_json(tmp / MARKER, {"owner": owner, "output": target.name})
        for tmp, target in zip(staged, targets, strict=True):
            check_replaceable(target, tmp, owner)  # every target checked before any is replaced
        for tmp, target in zip(staged, targets, strict=True):
            is_file = tmp.is_file()
            _swap(tmp, target)
            if is_file:
                record_owner(target, owner)
    except OSError as exc:
        if exc.errno not in DISK_FULL and "No space left on device" not in str(exc):
            raise
        named = [t for h, t in zip(holders, targets, strict=False) if str(h) in str(exc.filename or exc)]
        where = ", ".join(map(str, named or targets))
        raise PipelineError(
            f"{where}: no space left on the device while writing; the previous output is kept"
        ) from None
    finally:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)


@contextlib.contextmanager
def scratch_folder(target: Path) -> Iterator[Path]:
    """A work folder for the intermediate files of ``target``'s stage, beside it (the output's file
    system, not ``/tmp``), removed afterwards. One that a killed run left is deleted by the next
    run's :func:`recover`, as its temporaries are."""
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    work = temporary_beside(target)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def claim_folder(target: Path, owner: str) -> bool:
    """Make ``target`` a folder of ``owner`` that is filled part by part (each part written
    atomically by its writer): a missing or empty folder gets the owner's marker, a folder with
    that marker is taken as it is, anything else is refused with one line. True when the folder
    was made (or was empty) now."""
    what = f"{target}: exists and is not an output of `imdb-mlops {owner}`"
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise PipelineError(f"{what} (not a folder); choose another path")
    owned = target.is_dir() and _owned_by(target, owner)
    if target.is_dir() and not owned:
        held = sorted(p.name for p in target.iterdir())
        if held:
            shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
            raise PipelineError(f"{what} (it holds {shown}); choose another path or remove it yourself")
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / MARKER, {"owner": owner, "output": target.name})
    return not owned


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

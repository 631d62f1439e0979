"""Which command may replace an existing output file: the one that wrote it, or the one whose DVC
stage declares it.

Every output file a command writes is recorded in its folder's manifest
(``.imdb-mlops-outputs.json``: file name -> command, updated under a lock on the folder; ignored by
git and DVC). An existing file is replaced only when the manifest names the same command, or when
``dvc.yaml`` (in the working folder) declares it an output, metric or plot of a stage whose ``cmd``
runs that command (files DVC pulls or checks out carry no manifest entry). Anything else
(``--report README.md``, ``--report params.yaml``, ``--samples src/x.py``) is refused with one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from imdb_mlops.common.dvc_yaml import read_stages

MANIFEST = ".imdb-mlops-outputs.json"
OUTPUT_KEYS = ("outs", "metrics", "plots")


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` itself (no lock file left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _manifest(folder: Path) -> dict[str, str]:
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def recorded_owner(path: Path) -> str | None:
    """The command the manifest says wrote ``path`` (None when none did)."""
    return _manifest(path.parent).get(path.name)


def record_owner(path: Path, owner: str) -> None:
    """Note in the folder's manifest that ``owner`` wrote the file ``path``."""
    with _folder_lock(path.parent):
        files = _manifest(path.parent)
        if files.get(path.name) == owner:
            return
        files[path.name] = owner
        tmp = path.parent / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"files": dict(sorted(files.items()))}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path.parent / MANIFEST)


def _paths(entries: object) -> Iterator[str]:
    """Paths of a stage's ``outs``/``metrics``/``plots`` list (strings or one-key mappings)."""
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            yield from (key for key in entry if isinstance(key, str))


def declared_outputs(owner: str, project: Path = Path(".")) -> set[Path]:
    """Resolved paths that ``dvc.yaml`` in ``project`` declares as outputs of stages running
    ``imdb-mlops <owner>``."""
    runs = re.compile(rf"\bimdb-mlops\s+{re.escape(owner)}(\s|$)")
    found: set[Path] = set()
    for stage in read_stages(project).values():
        if not runs.search(str(stage.get("cmd", ""))):
            continue
        for key in OUTPUT_KEYS:
            found.update((project / path).resolve() for path in _paths(stage.get(key)))
    return found


def may_replace(path: Path, owner: str) -> bool:
    """Whether ``owner`` may replace the existing ``path`` (see the module doc)."""
    return recorded_owner(path) == owner or path.resolve() in declared_outputs(owner)

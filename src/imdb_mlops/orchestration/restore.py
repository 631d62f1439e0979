"""Put back a stage's previous outputs when it fails under ``dvc repro``.

DVC deletes a stage's outputs before it runs the stage's command. When the command then fails,
the outputs of the last successful run would be gone, although ``dvc.lock`` still describes them.
They are still in DVC's cache: cached outputs by design, and ``cache: false`` outputs (metrics such
as ``reports/data.json``) because DVC's run-cache commits them there too. So a stage command that
fails under DVC (``DVC_STAGE`` set) copies each output that is missing back from the cache, by the
hash ``dvc.lock`` records, before it exits non-zero: the workspace again matches ``dvc.lock``.

Only missing outputs are restored (an output that exists was written by this run and is whole:
stages swap outputs in atomically); each is built beside its place and renamed in. Nothing here
calls DVC's own commands: the running ``dvc repro`` holds the repository lock.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from imdb_mlops.common.files import temporary_beside


def stage_outputs(lock: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """The ``outs`` entries ``dvc.lock`` records for ``stage`` (``[]`` when it never ran)."""
    entry = (lock.get("stages") or {}).get(stage) or {}
    return [out for out in entry.get("outs") or [] if isinstance(out, dict) and out.get("path")]


def cache_dir(root: Path) -> Path:
    """DVC's local cache (``cache.dir`` in the repo's config, else ``.dvc/cache``)."""
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            return Path(repo.cache.local.path)
    except Exception:  # not a DVC repo here, or its config unreadable: the default layout
        return root / ".dvc" / "cache" / "files" / "md5"


def _object(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def _build(cache: Path, md5: str, dest: Path) -> bool:
    """Write the cached object ``md5`` (a file, or a ``.dir`` listing) at ``dest``; False if absent."""
    source = _object(cache, md5)
    if not source.is_file():
        return False
    if not md5.endswith(".dir"):
        shutil.copyfile(source, dest)
        return True
    entries = json.loads(source.read_text(encoding="utf-8"))
    files = [(_object(cache, e["md5"]), dest / e["relpath"]) for e in entries]
    if not all(src.is_file() for src, _ in files):
        return False
    dest.mkdir()
    for src, target in files:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return True


def restore_stage_outputs(stage: str, root: Path) -> tuple[list[str], list[str]]:
    """Copy ``stage``'s missing outputs back from DVC's cache; returns (restored, not in cache)."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return [], []
    restored, unavailable = [], []
    cache = None
    for out in stage_outputs(lock, stage):
        target = root / out["path"]
        md5 = out.get("md5")
        if target.exists() or target.is_symlink() or not md5:
            continue
        cache = cache or cache_dir(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        holder = temporary_beside(target)
        try:
            if _build(cache, md5, holder / target.name):
                os.replace(holder / target.name, target)
                restored.append(out["path"])
            else:
                unavailable.append(out["path"])
        finally:
            shutil.rmtree(holder, ignore_errors=True)
    return restored, unavailable

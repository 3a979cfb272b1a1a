"""Remove what crashed or interrupted writers left under ``WORKBENCH_HOME``.

* ``tmp/.upload-*``: upload spools of the REST server (a request that never finished);
* dataset folders with no record in the store (registration or split died between the
  folder and the record);
* ``.<name>.<random>.tmp``: temp files of :func:`workbench.store.atomic_write_bytes` that
  were never renamed into place.

Only leftovers untouched for :data:`GRACE_SECONDS` go, so nothing a live process is
writing right now (an upload in flight, a dataset being validated) is ever removed.
The server and the CLI run :func:`sweep_leftovers` when they start, next to
``JobService.reconcile_all``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from . import home
from .store import Store, get_store

GRACE_SECONDS = 3600.0
"""How long a leftover must have been left alone (newest mtime) before it is removed."""

UPLOAD_PREFIX = ".upload-"
_ATOMIC_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")


def _newest_mtime(path: Path) -> float:
    """The latest mtime of ``path`` and, for a folder, of anything in it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except FileNotFoundError:
                    pass
    return newest


def _stale(path: Path, cutoff: float) -> bool:
    try:
        return _newest_mtime(path) < cutoff
    except FileNotFoundError:
        return False


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return False


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def sweep_leftovers(grace: float | None = None, *, store: Store | None = None) -> list[Path]:
    """Remove stale leftovers (see the module doc); returns what was removed."""
    from .datasets import TABLE as DATASETS

    root = home.home()
    cutoff = time.time() - (GRACE_SECONDS if grace is None else grace)
    removed: list[Path] = []

    def take(path: Path) -> None:
        if _stale(path, cutoff) and _remove(path):
            removed.append(path)

    for path in _children(root / "tmp"):
        if path.name.startswith(UPLOAD_PREFIX):
            take(path)

    datasets = root / "datasets"
    if datasets.is_dir():
        known = {r["id"] for r in (store or get_store()).all(DATASETS)}
        for path in _children(datasets):
            if path.is_dir() and not path.is_symlink() and path.name not in known:
                take(path)

    # Atomic writes land in the home (store.json) and one level of folders below its
    # sub-folders (jobs/<id>/, datasets/<id>/); never below (checkpoints, model caches).
    folders = [root]
    for sub in _children(root):
        if sub.is_dir() and not sub.is_symlink():
            folders.append(sub)
            folders += [p for p in _children(sub) if p.is_dir() and not p.is_symlink()]
    for folder in folders:
        for path in _children(folder):
            if _ATOMIC_TMP.match(path.name) and path.is_file():
                take(path)
    return removed

"""One file-stamp cache: answers kept while the files they were computed from are unchanged.

A stamp is each file's ``(inode, size, mtime_ns)`` (None when missing). Every writer in the
workbench either appends (size changes) or replaces atomically (inode changes), so an equal
stamp means equal content. Status objects, metrics scans and analytics use one
:class:`StampCache` each, instead of a hand-rolled dict apiece.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

V = TypeVar("V")
Stamp = tuple[tuple[int, int, int] | None, ...]


def stamp(paths: Iterable[str | Path]) -> Stamp:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except (FileNotFoundError, NotADirectoryError, ValueError, OSError):
            out.append(None)
    return tuple(out)


class StampCache(Generic[V]):
    """``key → (stamp, value)``, least recently used first out, at most ``max_items`` entries."""

    def __init__(self, max_items: int = 1024):
        self.max_items = max_items
        self.items: OrderedDict[Hashable, tuple[Stamp, V]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, paths: Iterable[str | Path]) -> V | None:
        """The value, if cached for the files as they are now (a few ``stat`` calls)."""
        hit = self.items.get(key)
        if hit is not None and hit[0] == stamp(paths):
            with self.lock:
                if key in self.items:
                    self.items.move_to_end(key)
            return hit[1]
        return None

    def put(self, key: Hashable, at: Stamp, value: V) -> None:
        with self.lock:
            self.items[key] = (at, value)
            self.items.move_to_end(key)
            while len(self.items) > self.max_items:
                self.items.popitem(last=False)

    def get_or_compute(self, key: Hashable, paths: list[str | Path], compute: Callable[[], V],
                       keep: Callable[[V], bool] = lambda v: True) -> V:
        """The cached value, else ``compute()``; kept only if no file changed while computing."""
        hit = self.get(key, paths)
        if hit is not None:
            return hit
        before = stamp(paths)
        value = compute()
        if keep(value) and stamp(paths) == before:
            self.put(key, before, value)
        return value

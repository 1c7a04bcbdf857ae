"""Small bounded copies kept in one process, for what is read on every request and
changes rarely or never (frozen notice texts, notice page skeletons, the purposes).

A ``ProcessCache`` holds at most ``max_size`` entries and drops the oldest one stored
when full (first in, first out: reads do not reorder). With ``ttl_seconds`` an entry
older than that is read as missing, so a change made by another process shows within
that time. Every cache registers itself: ``clear_all`` empties them all (tests do, as
each test's database differs).

Values are shared by every thread of the process: keep only values nobody mutates.
"""

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Final, Generic, Literal, TypeVar

V = TypeVar("V")

_caches: "weakref.WeakSet[ProcessCache]" = weakref.WeakSet()


class _Missing(Enum):
    """No entry, or an expired one: an enum member, so a type checker narrows on ``is``."""

    MISSING = "missing"


_MISSING: Final = _Missing.MISSING


class ProcessCache(Generic[V]):
    def __init__(self, name: str, *, max_size: int, ttl_seconds: float | None = None) -> None:
        if max_size < 1:
            raise ValueError("a cache keeps at least one entry")
        self.name = name
        self.max_size = max_size
        self.ttl_seconds = ttl_seconds
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()  # threads share the entries; eviction is two steps
        _caches.add(self)

    def __repr__(self) -> str:
        return f"<ProcessCache {self.name}: {len(self)} of {self.max_size}>"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        value = self._fresh(key)
        return None if value is _MISSING else value

    def get_or_set(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The kept value, else ``compute()``'s, kept (computed outside the lock: two
        threads missing at once both compute, and the later one is kept)."""
        value = self._fresh(key)
        if value is _MISSING:
            read_at = time.monotonic()  # the value is as old as the reads behind it
            value = compute()
            self._store(key, value, read_at)
        return value

    def set(self, key: Hashable, value: V) -> None:
        self._store(key, value, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _store(self, key: Hashable, value: V, stored_at: float) -> None:
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self.max_size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (stored_at, value)

    def _fresh(self, key: Hashable) -> V | Literal[_Missing.MISSING]:
        entry = self._entries.get(key)
        if entry is None:
            return _MISSING
        stored_at, value = entry
        if self.ttl_seconds is not None and time.monotonic() - stored_at > self.ttl_seconds:
            return _MISSING
        return value


def clear_all() -> None:
    """Empty every process cache."""
    for cache in list(_caches):
        cache.clear()

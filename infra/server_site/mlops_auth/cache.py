"""A bounded cache behind a lock (cachetools' caches are not thread-safe; MLflow's Flask handlers
run on a thread pool), shared by the caching modules."""

from __future__ import annotations

import threading

from cachetools import LRUCache, TTLCache

MISSING = object()


class Locked:
    """At most `size` entries, least recently used out first, each kept `ttl` s (None: forever)."""

    def __init__(self, size: int, ttl: float | None) -> None:
        self._cache = LRUCache(size) if ttl is None else TTLCache(size, ttl)
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return self._cache.get(key, MISSING)

    def put(self, key, value) -> None:
        with self._lock:
            self._cache[key] = value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

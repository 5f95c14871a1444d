"""Optimisation: the auth store's reads kept for the auth cache's TTL, in each worker.

MLflow's auth app asks its database about every request: the user (is it an admin, its id) and
the user's grants, which cost more than many requests themselves. Its reads (`get_*`, `list_*`,
`has_*`, `is_*`) are kept for `auth_cache_ttl_seconds`; any other call to the store (a user
created, a password or grant changed) empties this worker's cache at once, and other workers see
the change within the TTL, as with MLflow's own credential cache. Passwords are never cached
here: `authenticate_user` goes through MLflow's credential cache only.
"""

from __future__ import annotations

from mlops_auth.cache import MISSING, Locked
from mlops_auth.compat import require

READ_PREFIXES = ("get_", "list_", "has_", "is_", "user_has_")
UNCACHED_READS = ("authenticate_user",)
SIZE = 10_000
NEEDS = ("store", "auth_config")


def install(auth) -> None:
    require(auth, NEEDS, "store_cache")
    if not isinstance(auth.store, CachedAuthStore):
        auth.store = CachedAuthStore(auth.store, auth.auth_config.auth_cache_ttl_seconds)


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        if isinstance(value, (set, frozenset)):
            return frozenset(value)
        if isinstance(value, (list, tuple)):
            return tuple(_hashable(v) for v in value)
        raise
    return value


class CachedAuthStore:
    """The auth app's store with its reads kept for `ttl` seconds; any other call clears them."""

    def __init__(self, store, ttl: float) -> None:
        self._store = store
        self.cache = Locked(SIZE, ttl)

    def __getattr__(self, name: str):
        attr = getattr(self._store, name)
        if not callable(attr) or name in UNCACHED_READS:
            return attr
        if name.startswith(READ_PREFIXES):
            return self._reader(name, attr)
        return self._writer(attr)

    def _reader(self, name: str, read):
        def cached(*args, **kwargs):
            try:
                key = (name, _hashable(args), _hashable(tuple(sorted(kwargs.items()))))
            except TypeError:
                return read(*args, **kwargs)
            value = self.cache.get(key)
            if value is MISSING:
                value = read(*args, **kwargs)
                self.cache.put(key, value)
            return list(value) if isinstance(value, list) else value

        return cached

    def _writer(self, write):
        def clearing(*args, **kwargs):
            try:
                return write(*args, **kwargs)
            finally:
                self.cache.clear()

        return clearing

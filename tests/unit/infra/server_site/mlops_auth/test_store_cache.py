"""mlops_auth.store_cache: the auth store's reads kept for the TTL, any write clears them."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from mlops_auth import cache, store_cache
from mlops_auth.compat import Incompatible


class Store:
    """Counts what reaches the database."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.grants = ["EDIT"]
        self.session_maker = object()

    def get_user(self, username):
        self.calls.append(f"get_user {username}")
        if username == "nobody":
            raise LookupError(username)
        return SimpleNamespace(username=username, id=7)

    def list_grants(self, user_id, workspace, resource_types):
        self.calls.append("list_grants")
        return list(self.grants)

    def authenticate_user(self, username, password):
        self.calls.append("authenticate_user")
        return True

    def revoke_user_resource_permission(self, *args):
        self.calls.append("revoke")
        self.grants = []


def test_reads_are_kept_and_a_write_empties_the_cache():
    store = Store()
    cached = store_cache.CachedAuthStore(store, ttl=60)
    assert cached.get_user("trainer").id == 7 and cached.get_user("trainer").id == 7
    assert cached.list_grants(7, "default", {"experiment", "run"}) == ["EDIT"]
    assert cached.list_grants(7, "default", {"run", "experiment"}) == ["EDIT"]
    assert store.calls == ["get_user trainer", "list_grants"]
    cached.list_grants(7, "default", {"run"}).append("MANAGE")  # a caller's list is its own
    assert cached.list_grants(7, "default", {"run"}) == ["EDIT"]
    cached.revoke_user_resource_permission(7, "experiment", "1")
    assert cached.list_grants(7, "default", {"experiment", "run"}) == []
    assert store.calls[-2:] == ["revoke", "list_grants"]
    assert cached.session_maker is store.session_maker  # attributes pass through


def test_passwords_are_never_cached_and_failures_are_asked_again():
    store = Store()
    cached = store_cache.CachedAuthStore(store, ttl=60)
    for _ in range(2):
        assert cached.authenticate_user("trainer", "secret")
        with pytest.raises(LookupError):
            cached.get_user("nobody")
    assert store.calls == ["authenticate_user", "get_user nobody"] * 2
    assert len(cached.cache) == 0


def test_reads_expire_after_the_ttl():
    store = Store()
    cached = store_cache.CachedAuthStore(store, ttl=0.2)
    cached.get_user("trainer")
    cached.get_user("trainer")
    time.sleep(0.3)
    cached.get_user("trainer")
    assert store.calls == ["get_user trainer"] * 2


def test_unhashable_arguments_are_read_through():
    store = Store()
    cached = store_cache.CachedAuthStore(store, ttl=60)
    cached.list_grants(7, "default", [{"type": "run"}])
    cached.list_grants(7, "default", [{"type": "run"}])
    assert store.calls == ["list_grants"] * 2


def test_the_cache_is_bounded():
    lru = cache.Locked(3, None)
    for key in "abcd":
        lru.put(key, key.upper())
    assert len(lru) == 3 and lru.get("a") is cache.MISSING and lru.get("d") == "D"


def test_it_wraps_mlflow_s_store_once_with_the_auth_config_s_ttl(auth):
    store_cache.install(auth)
    cached = auth.store
    store_cache.install(auth)
    assert auth.store is cached and isinstance(cached, store_cache.CachedAuthStore)
    assert cached.cache._cache.ttl == auth.auth_config.auth_cache_ttl_seconds


def test_an_mlflow_without_what_it_wraps_stops_the_server_naming_it():
    with pytest.raises(Incompatible, match=r"^mlops-auth: store_cache needs .*auth_config"):
        store_cache.install(SimpleNamespace(__name__="mlflow.server.auth", store=Store()))

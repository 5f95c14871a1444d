"""The auth app's read caches (infra/server_site/mlflow_auth_cache.py), against a recording store;
tests/integration/test_platform.py runs them in the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from infra.mlflow_server import LOCAL_SITE_DIR as SITE_DIR

sys.path.insert(0, str(SITE_DIR))
import mlflow_auth_cache as cache  # noqa: E402

sys.path.remove(str(SITE_DIR))


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
    cached = cache.CachedAuthStore(store, ttl=60)
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
    cached = cache.CachedAuthStore(store, ttl=60)
    for _ in range(2):
        assert cached.authenticate_user("trainer", "secret")
        with pytest.raises(LookupError):
            cached.get_user("nobody")
    assert store.calls == ["authenticate_user", "get_user nobody"] * 2
    assert len(cached.cache) == 0
    cached.get_user("trainer")
    cached.authenticate_user("trainer", "secret")  # a check is no write: the cache stays
    cached.get_user("trainer")
    assert store.calls[-2:] == ["get_user trainer", "authenticate_user"]


def test_reads_expire_after_the_ttl():
    store = Store()
    cached = cache.CachedAuthStore(store, ttl=0.2)
    cached.get_user("trainer")
    cached.get_user("trainer")
    time.sleep(0.3)
    cached.get_user("trainer")
    assert store.calls == ["get_user trainer"] * 2


def test_unhashable_arguments_are_read_through():
    store = Store()
    cached = cache.CachedAuthStore(store, ttl=60)
    cached.list_grants(7, "default", [{"type": "run"}])
    cached.list_grants(7, "default", [{"type": "run"}])
    assert store.calls == ["list_grants"] * 2


def test_the_cache_is_bounded():
    lru = cache._cache(3, None)
    for key in "abcd":
        lru.put(key, key.upper())
    assert len(lru) == 3 and lru.get("a") is cache.MISSING and lru.get("d") == "D"


def test_a_run_s_requirements_are_kept_but_a_missing_run_is_asked_again():
    asked = []

    def original(run_id, action):
        asked.append(run_id)
        return None if run_id == "missing" else (("experiment", "1"), [action])

    requirement = cache._cached_run_requirement(original, cache._cache(10, None))
    anchor, first = requirement("r1", "update")
    first.append("a logged model's")  # as MLflow's log_batch check does to the list it gets
    assert requirement("r1", "update") == (("experiment", "1"), ["update"])
    assert requirement("missing", "read") is None and requirement("missing", "read") is None
    assert asked == ["r1", "missing", "missing"]


def test_a_changed_mlflow_stops_the_server_with_what_is_missing():
    module = SimpleNamespace(store=Store(), auth_config=SimpleNamespace(auth_cache_ttl_seconds=5))
    with pytest.raises(
        cache.IncompatibleMlflow, match="no authenticate_request_basic_auth, _run_requirement"
    ):
        cache.install(module)


def test_it_installs_once_into_the_pinned_mlflow():
    """In a process of its own, as a server worker imports it: the pinned MLflow's auth app gets
    the caches, with the TTL of the auth config, and a second install changes nothing."""
    script = f"""
import sys
sys.path.insert(0, {str(SITE_DIR)!r})
import mlflow_auth_cache as c
from mlflow.server import auth
assert isinstance(auth.store, c.CachedAuthStore), type(auth.store)
assert c.install() is auth.store
assert auth.store.cache._cache.ttl == auth.auth_config.auth_cache_ttl_seconds
assert auth._run_requirement.__name__ == "run_requirement"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_one_check_at_a_time_per_key():
    flights, calls, cache_ = cache.SingleFlight(), [], {}

    def check():
        if "k" in cache_:
            return "hit"
        calls.append(1)
        time.sleep(0.2)
        cache_["k"] = True
        return "checked"

    results = []
    threads = [threading.Thread(target=lambda: results.append(flights("k", check)))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(results) == ["checked"] + ["hit"] * 7
    assert flights._flights == {}


def test_concurrent_requests_with_an_expired_credential_check_the_password_once(tmp_path):
    """In MLflow's own auth app (its own process): eight requests of one user whose credential is
    not cached make one password check, not eight; a wrong password is still refused."""
    ini = tmp_path / "auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\nauth_cache_ttl_seconds = 60\n"
                   f"database_uri = sqlite:///{tmp_path}/auth.db\nadmin_username = admin\n")  # fmt: skip
    script = f"""
import base64, sys, threading, time
sys.path.insert(0, {str(SITE_DIR)!r})
import mlflow_auth_cache as c
from mlflow.server import auth
from mlflow.server.auth.entities import User
checks = []
def authenticate_user(username, password):
    checks.append(username)
    time.sleep(0.2)  # as scrypt takes its time
    return password == "right"
auth.store._store.authenticate_user = authenticate_user
auth.store._store.get_user = lambda name: User(id_=1, username=name, password_hash="x", is_admin=False)
results = []
def request(password):
    header = "Basic " + base64.b64encode(f"trainer:{{password}}".encode()).decode()
    with auth.app.test_request_context(headers={{"Authorization": header}}):
        results.append(type(c.authenticate_request_basic_auth()).__name__)
threads = [threading.Thread(target=request, args=("right",)) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
assert checks == ["trainer"], checks
assert set(results) == {{"Authorization"}}, results
request("wrong")
assert results[-1] == "Response" and len(checks) == 2, (results, checks)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini)})  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]

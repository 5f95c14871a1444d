"""mlops_auth.one_check: one authentication per request, one password check at a time."""

from __future__ import annotations

import base64
import threading
import time
from types import SimpleNamespace

from cachetools import TTLCache
from mlops_auth import one_check


def test_one_check_at_a_time_per_key():
    flights, calls, done = one_check.SingleFlight(), [], {}

    def check():
        if "k" in done:
            return "hit"
        calls.append(1)
        time.sleep(0.2)
        done["k"] = True
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


def test_concurrent_requests_with_an_expired_credential_check_the_password_once(auth, monkeypatch):
    """Through MLflow's own basic auth: eight requests of one user whose credential is not in
    MLflow's credential cache make one password check, not eight; a wrong one is still refused;
    the auth config keeps MLflow's default function (the UI's logout needs it)."""
    from mlflow.server.auth.entities import User

    checks = []

    def authenticate_user(username, password, **_):
        checks.append(username)
        time.sleep(0.2)  # as scrypt takes its time
        return password == "right"

    user = User(id_=1, username="trainer", password_hash="x", is_admin=False)
    monkeypatch.setattr(auth, "store", SimpleNamespace(authenticate_user=authenticate_user,
                                                       get_user=lambda name: user))  # fmt: skip
    monkeypatch.setattr(auth, "_USER_AUTH_CACHE", TTLCache(100, 60))
    one_check.install(auth)
    assert auth.auth_config.authorization_function == auth.DEFAULT_AUTHORIZATION_FUNCTION
    results = []

    def request(password):
        header = "Basic " + base64.b64encode(f"trainer:{password}".encode()).decode()
        with auth.app.test_request_context(headers={"Authorization": header}):
            results.append(type(auth.authenticate_request()).__name__)

    threads = [threading.Thread(target=request, args=("right",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert checks == ["trainer"]
    assert set(results) == {"Authorization"}
    request("wrong")
    assert results[-1] == "Response" and len(checks) == 2


def test_a_request_is_authenticated_once_and_the_next_one_again(auth, monkeypatch):
    """The auth app asks up to three times per request (before it, to redact the answer, whether
    the caller is an admin): the first answer stands for the rest of that request only."""
    calls = []
    monkeypatch.setattr(auth, "_USER_AUTH_CACHE", None)
    monkeypatch.setattr(auth, "authenticate_request_basic_auth",
                        lambda: calls.append(1) or f"user {len(calls)}")  # fmt: skip
    one_check.install(auth)
    with auth.app.test_request_context():
        assert auth.authenticate_request() == "user 1"
        assert auth.authenticate_request() == "user 1"
    with auth.app.test_request_context():
        assert auth.authenticate_request() == "user 2"
    assert calls == [1, 1]

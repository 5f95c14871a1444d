"""Optimisation: a request is authenticated once, and a credential's password is checked by one
request at a time.

MLflow's auth app authenticates a request more than once (its before_request hook, then for a
non-admin's registry or run answer again to redact it, and to ask whether the caller is an
admin): the first answer is kept for the rest of the request (Flask's `g`). And when a
credential's entry in MLflow's credential cache expires under load, every request in flight with
it would run the password hash at once (scrypt: CPU and 32 MiB each); here the others wait for
the first, then find the cache filled. MLflow's `authenticate_request_basic_auth` is wrapped
where its auth app looks it up, so the auth config keeps MLflow's default authorization function
(and MLflow's UI its logout and change-password, which it shows only with that default).
"""

from __future__ import annotations

import functools
import threading

from mlops_auth.cache import MISSING
from mlops_auth.compat import require

NEEDS = ("authenticate_request_basic_auth", "get_auth_func", "_USER_AUTH_CACHE",
         "_USER_AUTH_CACHE_LOCK", "_auth_cache_key")  # fmt: skip
REQUEST_AUTH = "_mlops_auth_authorization"  # this request's answer, in Flask's g


class SingleFlight:
    """One call at a time per key: the others wait for it, then make their own (by then, for a
    password check, a hit in MLflow's credential cache)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict = {}

    def __call__(self, key, call):
        with self._guard:
            done = self._flights.get(key)
            leader = done is None
            if leader:
                self._flights[key] = done = threading.Event()
        if not leader:
            done.wait()
            return call()
        try:
            return call()
        finally:
            with self._guard:
                del self._flights[key]
            done.set()


def install(auth) -> None:
    require(auth, NEEDS, "one_check")
    auth.authenticate_request_basic_auth = once_per_request(
        auth, auth.authenticate_request_basic_auth
    )
    auth.get_auth_func.cache_clear()  # it may have looked up the original already


def once_per_request(auth, original):
    checks = SingleFlight()

    def authenticate():
        from flask import request

        creds = request.authorization
        if (
            auth._USER_AUTH_CACHE is None
            or creds is None
            or not creds.username
            or creds.password is None
        ):
            return original()
        key = auth._auth_cache_key(creds.username, creds.password)
        with auth._USER_AUTH_CACHE_LOCK:
            known = key in auth._USER_AUTH_CACHE
        return original() if known else checks(key, original)

    @functools.wraps(original)
    def authenticate_request_basic_auth():
        from flask import g

        found = g.get(REQUEST_AUTH, MISSING)
        if found is MISSING:
            found = authenticate()
            setattr(g, REQUEST_AUTH, found)
        return found

    return authenticate_request_basic_auth

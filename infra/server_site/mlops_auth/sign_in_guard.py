"""Sign-ins that cost nothing when they fail; an ASGI middleware in front of MLflow's auth.

A wrong password costs MLflow a full password hash (scrypt: slow and memory-hungry by design), and
it remembers only successes, so a few anonymous clients guessing one user's password (the user
names are in the README) slowed every workload's requests many-fold (docs/benchmarks.md). Here,
per worker, before MLflow sees the request:
- a protected path without credentials, or with any identity header but a well-formed Basic
  one, gets MLflow's own 401 at once (it answered `Bearer x` with a 500, and a big anonymous
  body only after buffering it);
- a (user, password) that failed within `failed_password_seconds` gets 401 again without a check
  (kept as an HMAC under a key of this process, never the password);
- a client address with `sign_in_failures` failed sign-ins in the current minute gets 429 with
  Retry-After for any credential this worker has not accepted recently; credentials it accepted
  within the auth cache's TTL pass, so a workload sharing the address keeps working.
Refusals of a remembered password or an address over its budget are answered after a second's
pause, which costs the server nothing and slows a guessing client to one try a second.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import time

import anyio
from cachetools import TTLCache

from mlops_auth.asgi import answer

WINDOW_SECONDS = 60
REFUSAL_PAUSE_SECONDS = 1.0
CACHE_SIZE = 10_000
UNAUTHENTICATED = (
    b"You are not authenticated. Please see "
    b"https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow "
    b"on how to authenticate."
)  # MLflow's own 401 text


def credentials(header: bytes | None) -> tuple[str, str] | None:
    """(user, password) of a well-formed Basic header; None for anything else."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or not user:
        return None
    return user, password


class SignInGuard:
    """See the module's docstring. `is_unprotected(path)` is MLflow's own test of the paths that
    need no login; `good_seconds` is MLflow's credential cache TTL."""

    def __init__(
        self,
        app,
        *,
        is_unprotected,
        gateway_header: bytes,
        sign_in_failures: int,
        failed_password_seconds: int,
        good_seconds: int,
        clock=time.monotonic,
    ) -> None:
        self.app = app
        self.is_unprotected = is_unprotected
        self.gateway_header = gateway_header.lower()
        self.budget = sign_in_failures
        self.clock = clock
        self.key = secrets.token_bytes(32)
        self.failed = TTLCache(CACHE_SIZE, max(failed_password_seconds, 1e-9), timer=clock)
        self.good = TTLCache(CACHE_SIZE, max(good_seconds, 1e-9), timer=clock)
        self.failures: dict[str, tuple[float, int]] = {}  # address -> (window start, count)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.is_unprotected(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = gateway = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
            elif name == self.gateway_header and value:
                gateway = value
        if gateway is not None and scope["path"].startswith("/gateway/"):
            header = gateway  # MLflow reads this one first on the AI gateway's routes
        found = credentials(header)
        if found is None:
            await self._unauthenticated(send)
            return
        key = hmac.new(self.key, "\0".join(found).encode(), "sha256").digest()
        address = (scope.get("client") or ("",))[0]
        counted = None
        if key not in self.good:
            if key in self.failed:
                await anyio.sleep(REFUSAL_PAUSE_SECONDS)
                await self._unauthenticated(send)
                return
            wait = self._wait(address)
            if wait:
                await anyio.sleep(REFUSAL_PAUSE_SECONDS)
                await self._too_many(send, wait)
                return
            # Counted as failed until it is known not to be: guesses in flight at once count too.
            counted = self._count(address, +1)

        async def watching(message) -> None:
            # Judged as the answer starts, not when the app returns: a client on a kept-alive
            # connection may send its next try before this request's task has finished.
            if message["type"] == "http.response.start":
                self._judge(key, address, message["status"], counted)
            await send(message)

        await self.app(scope, receive, watching)

    def _judge(self, key: bytes, address: str, status: int, counted: float | None) -> None:
        """Remember how a sign-in went; `counted` is the window its provisional failure went to
        (None: none was counted, the credential was accepted before)."""
        if status == 401:
            self.good.pop(key, None)
            self.failed[key] = True
            if counted is None:  # a credential accepted before: its failure counts now
                self._count(address, +1)
            return
        if counted is not None:
            self._count(address, -1, window=counted)
        if 200 <= status < 400:  # MLflow checked it (a 403 may come before any check)
            self.good[key] = True

    def _wait(self, address: str) -> int:
        """Seconds until `address` may try a new credential again (0: now)."""
        start, count = self.failures.get(address, (0.0, 0))
        left = start + WINDOW_SECONDS - self.clock()
        if left <= 0 or count < self.budget:
            return 0
        return math.ceil(left)

    def _count(self, address: str, step: int, window: float | None = None) -> float:
        """Add `step` to the address's failures in the current window (a -1 only to `window`, the
        one its +1 went to); returns the window's start."""
        now = self.clock()
        start, count = self.failures.get(address, (now, 0))
        if now - start >= WINDOW_SECONDS:
            start, count = now, 0
        if window is not None and window != start:
            return start  # that window is over: nothing to take back
        if len(self.failures) >= CACHE_SIZE and address not in self.failures:
            self.failures = {a: w for a, w in self.failures.items() if now - w[0] < WINDOW_SECONDS}
            if len(self.failures) >= CACHE_SIZE:
                self.failures.clear()
        self.failures[address] = (start, max(0, count + step))
        return start

    @staticmethod
    async def _unauthenticated(send) -> None:
        await answer(send, 401, UNAUTHENTICATED, ((b"www-authenticate", b'Basic realm="mlflow"'),),
                     close=True, content_type=b"text/plain; charset=utf-8")  # fmt: skip

    @staticmethod
    async def _too_many(send, wait: int) -> None:
        body = (
            b'{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many failed sign-ins '
            b'from this address; try again later."}'
        )
        await answer(send, 429, body, ((b"retry-after", str(wait).encode()),), close=True)

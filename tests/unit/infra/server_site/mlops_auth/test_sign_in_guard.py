"""mlops_auth.sign_in_guard: a failed sign-in costs no password check the second time, and an
address with too many gets 429 before any check; a credential the server accepted still works."""

from __future__ import annotations

import base64

import pytest
from mlops_auth import sign_in_guard
from mlops_auth.sign_in_guard import SignInGuard, credentials

from tests.unit.infra.server_site.mlops_auth.asgi import Inner, request

GOOD, BUDGET = "the-right-password", 3


class Checking(Inner):
    """MLflow behind the guard: counts password checks; 401 unless the password is GOOD."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"")
        if scope["path"].startswith("/gateway/"):  # as MLflow reads the gateway's routes
            header = headers.get(b"x-mlflow-authorization") or header
        user, password = credentials(header) or ("", "")
        if scope["path"] != "/health":
            self.checked.append(password)
        self.status = 200 if password == GOOD or scope["path"] == "/health" else 401
        await super().__call__(scope, receive, send)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded(monkeypatch):
    monkeypatch.setattr(sign_in_guard, "REFUSAL_PAUSE_SECONDS", 0)
    inner, clock = Checking(), Clock()
    app = SignInGuard(inner, is_unprotected=lambda path: path == "/health",
                      gateway_header=b"X-MLflow-Authorization", sign_in_failures=BUDGET,
                      failed_password_seconds=60, good_seconds=60, clock=clock)  # fmt: skip
    return inner, app, clock


def basic(user: str, password: str) -> tuple[bytes, bytes]:
    return b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def sign_in(app, password, user="trainer", client=("10.0.0.9", 1)):
    return request(app, headers=(basic(user, password),), client=client)


@pytest.mark.parametrize("header", [None, b"Bearer x", b"Basic", b"Basic !!!notbase64",
                                    b"Basic " + base64.b64encode(b"no-colon"),
                                    b"Basic " + base64.b64encode(b":no-user"),
                                    b"Basic " + base64.b64encode(b"\xff\xfe:x"),
                                    b"Digest username=admin", b""])  # fmt: skip
def test_anything_but_a_well_formed_basic_identity_gets_mlflow_s_401(guarded, header):
    """MLflow answered `Bearer x` with a 500 and a traceback; and it refuses an anonymous
    request only after buffering its body."""
    inner, app, _ = guarded
    answer = request(app, "POST", headers=() if header is None else ((b"authorization", header),),
                     chunks=[b"x" * 1000] * 5)  # fmt: skip
    assert answer.status == 401 and inner.calls == 0 and answer.read == 0
    assert answer.headers[b"www-authenticate"] == b'Basic realm="mlflow"'


def test_a_path_needing_no_login_passes_without_credentials(guarded):
    inner, app, _ = guarded
    assert request(app, path="/health").status == 200 and inner.calls == 1


def test_a_wrong_password_is_checked_once_then_refused_from_memory(guarded):
    inner, app, clock = guarded
    assert sign_in(app, "guess").status == 401
    assert sign_in(app, "guess").status == 401
    assert inner.checked == ["guess"]  # one password hash, not two
    clock.now += 61  # remembered a minute: then checked again (it may have become right)
    assert sign_in(app, "guess").status == 401 and inner.checked == ["guess", "guess"]


def test_an_address_over_its_budget_gets_429_before_any_check_until_the_minute_ends(guarded):
    inner, app, clock = guarded
    for i in range(BUDGET):
        assert sign_in(app, f"guess-{i}").status == 401
    refused = sign_in(app, "guess-new")
    assert refused.status == 429 and inner.checked == [f"guess-{i}" for i in range(BUDGET)]
    assert refused.headers[b"retry-after"] == b"60"
    clock.now += 30
    assert sign_in(app, "guess-new").headers[b"retry-after"] == b"30"
    assert sign_in(app, "guess-other", client=("10.0.0.7", 1)).status == 401  # another address
    clock.now += 31
    assert sign_in(app, "guess-new").status == 401  # a new minute


def test_a_credential_the_server_accepted_keeps_working_from_a_guessing_address(guarded):
    """A workload sharing its address with a guesser is not locked out."""
    inner, app, _ = guarded
    assert sign_in(app, GOOD).status == 200
    for i in range(BUDGET + 5):
        sign_in(app, f"guess-{i}")
    assert sign_in(app, GOOD).status == 200
    assert sign_in(app, "guess-late").status == 429


def test_a_password_that_stops_working_is_refused_and_counted(guarded):
    inner, app, _ = guarded
    assert sign_in(app, GOOD).status == 200
    inner_status = Checking.__call__

    async def revoked(self, scope, receive, send):
        self.status = 401
        await Inner.__call__(self, scope, receive, send)

    Checking.__call__ = revoked
    try:
        assert sign_in(app, GOOD).status == 401
    finally:
        Checking.__call__ = inner_status
    assert sign_in(app, GOOD).status == 401 and inner.calls == 2  # now remembered as failed


def test_the_gateway_header_counts_on_the_gateway_s_routes():
    inner = Checking()
    app = SignInGuard(inner, is_unprotected=lambda p: False, gateway_header=b"X-MLflow-Authorization",
                      sign_in_failures=3, failed_password_seconds=60, good_seconds=60)  # fmt: skip
    _, good = basic("trainer", GOOD)
    headers = ((b"authorization", b"Bearer provider-key"), (b"x-mlflow-authorization", good))
    assert request(app, path="/gateway/x/mlflow/invocations", headers=headers).status == 200
    assert request(app, path="/api/2.0/mlflow/x", headers=headers).status == 401


def test_guesses_in_flight_at_once_count_against_the_budget(guarded):
    """16 clients guessing at once: no more password checks than the budget, not one each."""
    import asyncio

    inner, app, _ = guarded

    class Slow(Checking):
        async def __call__(self, scope, receive, send):
            await asyncio.sleep(0.05)  # as a password hash takes its time
            await super().__call__(scope, receive, send)

    slow = Slow()
    app.app = slow

    async def one(i):
        statuses = []

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "GET", "path": "/api/2.0/mlflow/x", "query_string": b"",
                 "headers": [basic("trainer", f"guess-{i}")], "client": ("10.0.0.9", i)}  # fmt: skip
        await app(scope, receive, send)
        return statuses[0]

    async def flood():
        return await asyncio.gather(*(one(i) for i in range(16)))

    statuses = asyncio.run(flood())
    assert len(slow.checked) == BUDGET and sorted(statuses) == [401] * BUDGET + [429] * 13

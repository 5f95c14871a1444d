"""The auth app's read caches (infra/server_site/mlflow_auth_cache.py), against a recording store;
tests/integration/test_platform.py runs them in the real server."""

from __future__ import annotations

import os
import secrets
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
assert not hasattr(auth._redact_run_response.__wrapped__, "__wrapped__")  # wrapped once
assert not hasattr(auth._redact_version_response.__wrapped__, "__wrapped__")
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


def test_the_permission_middleware_is_skipped_only_where_it_would_hand_the_request_on(tmp_path):
    """In MLflow's own FastAPI auth app (its own process): a tracking API request (a Flask
    route) and /health skip MLflow's BaseHTTPMiddleware, and Flask still refuses the anonymous
    request; a native FastAPI route with a validator (OTLP traces) still goes through it and is
    refused there; with fail-closed mode on, nothing is skipped."""
    ini = tmp_path / "auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\nauth_cache_ttl_seconds = 60\n"
                   f"database_uri = sqlite:///{tmp_path}/auth.db\nadmin_username = admin\n")  # fmt: skip
    script = f"""
import functools, os, sys
sys.path.insert(0, {str(SITE_DIR)!r})
import mlflow_auth_cache as c
from mlflow.server import auth
from starlette.testclient import TestClient
app = auth.create_app()
[entry] = [m for m in app.user_middleware
           if getattr(m.kwargs.get("dispatch"), "__qualname__", "") == c.PERMISSION_MIDDLEWARE]
calls = []
real = entry.kwargs["dispatch"]
@functools.wraps(real)
async def counted(request, call_next):
    calls.append(request.url.path)
    return await real(request, call_next)
entry.kwargs["dispatch"] = counted
client = TestClient(app, base_url="http://localhost")
assert client.get("/health").status_code == 200
r = client.get("/api/2.0/mlflow/experiments/get", params={{"experiment_id": "0"}})
assert r.status_code == 401, (r.status_code, r.text[:200])
assert calls == [], calls
r = client.post("/v1/traces", content=b"")
assert r.status_code == 401, (r.status_code, r.text[:200])
assert calls == ["/v1/traces"], calls
os.environ["MLFLOW_BASIC_AUTH_FAIL_CLOSED"] = "false"
r = client.get("/api/2.0/mlflow/experiments/get", params={{"experiment_id": "0"}})
assert r.status_code == 401 and calls == ["/v1/traces"], calls
print("ok")
"""
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "_MLFLOW_SGI_NAME": "uvicorn",
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
           "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(24)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=180, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_only_what_the_permission_middleware_would_hand_on_passes_it():
    """passes_through asks MLflow's own functions, in the middleware's order."""
    native, mode = ["/ajax-api/3.0/native"], {"fail_closed": True}
    module = SimpleNamespace(
        is_unprotected_route=lambda path: path == "/health",
        _find_fastapi_validator=lambda path, method: "v" if path == "/v1/traces" else None,
        MLFLOW_BASIC_AUTH_FAIL_CLOSED=SimpleNamespace(get=lambda: mode["fail_closed"]),
    )

    def through(path, kind="http", routes=native):
        scan = None if routes is None else lambda scope: scope["path"] in routes
        return cache.passes_through(module, {"type": kind, "path": path, "method": "GET"}, scan)

    for mode["fail_closed"] in (True, False):
        assert through("/health") and through("/api/2.0/mlflow/runs/get")
        assert not through("/v1/traces")  # its validator runs
        assert not through("") and not through("/health", kind="websocket")
    mode["fail_closed"] = True
    assert not through("/ajax-api/3.0/native")  # fail-closed: the middleware may deny it
    assert not through("/api/2.0/mlflow/runs/get", routes=None)  # no app in the scope
    mode["fail_closed"] = False
    assert through("/ajax-api/3.0/native")


def test_the_route_scan_is_remembered_by_path_and_method_unless_a_route_matches_by_host():
    from starlette.routing import Host, Route

    scans = []

    def scan_routes(routes, scope):
        scans.append(scope["path"])
        return scope["path"] == "/native" and scope["method"] == "GET"

    routes = [Route("/native", lambda request: None, methods=["GET"])]
    module = SimpleNamespace(_native_fastapi_routes=lambda app: app.routes,
                             _scope_matches_native_route=scan_routes)  # fmt: skip
    matches = cache.native_route_scan(module, SimpleNamespace(routes=routes))

    def scope(path, method="GET", root=""):
        return {"type": "http", "path": path, "method": method, "root_path": root}

    assert matches(scope("/native")) and matches(scope("/native"))
    assert not matches(scope("/native", "POST")) and not matches(scope("/api/x"))
    matches(scope("/native", root="/prefix"))  # another root path: asked again
    assert scans == ["/native", "/native", "/api/x", "/native"]  # once per key
    by_host = cache.native_route_scan(module, SimpleNamespace(routes=[*routes, Host("h", None)]))
    by_host(scope("/native")), by_host(scope("/native"))
    assert scans[-2:] == ["/native", "/native"]  # asked every time


def test_a_request_is_authenticated_once_and_the_next_one_again(monkeypatch):
    """The auth app asks up to three times per request (before it, to redact the answer, whether
    the caller is an admin): the first answer stands for the rest of that request only."""
    from mlflow.server import auth

    calls = []
    monkeypatch.setattr(auth, "_USER_AUTH_CACHE", None)
    monkeypatch.setattr(auth, "authenticate_request_basic_auth",
                        lambda: calls.append(1) or f"user {len(calls)}")  # fmt: skip
    with auth.app.test_request_context():
        assert cache.authenticate_request_basic_auth() == "user 1"
        assert cache.authenticate_request_basic_auth() == "user 1"
    with auth.app.test_request_context():
        assert cache.authenticate_request_basic_auth() == "user 2"
    assert calls == [1, 1]


def _run_answer(kind: str):
    """A search_runs answer of two runs, the second with the model link `kind` (or none)."""
    from mlflow.protos.service_pb2 import Metric, Run, SearchRuns

    runs = []
    for i in range(2):
        run = Run()
        run.info.run_id, run.info.experiment_id = f"r{i}", "1"
        run.data.metrics.append(Metric(key="loss", value=0.5, timestamp=1, step=i))
        runs.append(run)
    linked = runs[1]
    if kind == "input":
        linked.inputs.model_inputs.add(model_id="m-1")
    elif kind == "output":
        linked.outputs.model_outputs.add(model_id="m-1", step=3)
    elif kind == "metric":
        linked.data.metrics[0].model_id = "m-1"
    elif kind == "an output with no model id":
        linked.outputs.model_outputs.add(step=3)
    elif kind == "an empty input":
        linked.inputs.model_inputs.add()
    elif kind == "a key's name as a value":  # no link, but it cannot tell: parsed
        linked.data.tags.add(key="note", value="model_id")
    return SearchRuns.Response(runs=runs)


@pytest.mark.parametrize("denied", [False, True])
@pytest.mark.parametrize("admin", [False, True])
@pytest.mark.parametrize(
    "kind",
    ["none", "input", "output", "metric", "an output with no model id", "an empty input",
     "a key's name as a value"],
)  # fmt: skip
def test_a_run_answer_is_redacted_as_mlflow_does_and_parsed_only_when_it_has_model_links(
    monkeypatch, kind, denied, admin
):
    """Through MLflow's own search_runs redaction: the answer comes out byte for byte as MLflow's
    unwrapped redaction makes it (model links cleared where the caller may not see logged
    models), and an answer with no model link is not parsed into a protobuf at all."""
    from flask import Response
    from mlflow.server import auth
    from mlflow.utils.proto_json_utils import message_to_json

    parses = []
    parse = auth.parse_dict
    monkeypatch.setattr(auth, "parse_dict", lambda js, m: parses.append(1) or parse(js, m))
    monkeypatch.setattr(auth, "sender_is_admin", lambda: admin)
    monkeypatch.setattr(auth, "authenticate_request", lambda: SimpleNamespace(username="trainer"))
    tiers = {auth.RESOURCE_TYPE_LOGGED_MODEL} if denied else set()
    monkeypatch.setattr(auth, "_denied_sibling_tiers", lambda user, asked: set(asked) & tiers)
    body = message_to_json(_run_answer(kind))

    mlflows = Response(body, mimetype="application/json")
    auth._redact_run_response.__wrapped__(mlflows, type(_run_answer(kind))(), lambda m: m.runs)
    assert len(parses) == (0 if admin else 1)
    ours = Response(body, mimetype="application/json")
    auth.redact_search_runs_model_links(ours)  # MLflow's handler, through the wrapper
    assert ours.get_data() == mlflows.get_data()
    assert len(parses) == (0 if admin else 1 if kind == "none" else 2)
    if kind in ("input", "output", "metric"):
        assert (b'"m-1"' in ours.get_data()) == (admin or not denied)
    if kind in ("an output with no model id", "an empty input") and denied and not admin:
        assert ours.get_data() != body.encode()  # MLflow cleared the link: so did we


LOG_BODIES = {
    "no model": {"run_id": "r1", "metrics": [{"key": "loss", "value": 1, "timestamp": 0, "step": 0}]},
    "a model": {"run_id": "r1", "metrics": [{"key": "a", "value": 1, "timestamp": 0, "step": 0},
                                            {"key": "b", "value": 1, "timestamp": 0, "step": 0,
                                             "model_id": "m-7"}]},
    "a model by JSON name": {"run_id": "r1", "metrics": [{"key": "a", "value": 1, "timestamp": 0,
                                                          "step": 0, "modelId": "m-7"}]},
    "metrics not a list": {"run_id": "r1", "metrics": {"key": "a"}},
    "a run spelled twice": {"run_id": "r1", "runId": "r2", "metrics": []},
    "no metrics": {"run_id": "r1", "params": [{"key": "p", "value": "1"}]},
    "a metric field spelled twice": {"run_id": "r1", "metrics": [
        {"key": "a", "value": 1, "timestamp": 0, "step": 0, "dataset_name": "d", "datasetName": "e"}
    ]},
}  # fmt: skip


@pytest.mark.parametrize("path", ["log-batch", "log-metric"])
@pytest.mark.parametrize("case", [*LOG_BODIES, "an escaped key"])
def test_logging_is_authorised_as_mlflow_does_without_parsing_a_body_that_names_no_model(
    monkeypatch, path, case
):
    """The validator the auth app finds for log-batch and log-metric asks for the same grants as
    MLflow's own (the run, plus every logged model the metrics name) or refuses the same body,
    and parses the body into a protobuf only when it names a model; a key spelled with a JSON
    escape counts as the key it spells."""
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.server import auth, handlers

    asked, parses = [], []
    monkeypatch.setattr(auth, "_validate_can_update_run_and_models",
                        lambda model_ids: asked.append(sorted(model_ids)) or True)  # fmt: skip
    parse = handlers.parse_dict
    monkeypatch.setattr(handlers, "parse_dict", lambda js, m: parses.append(1) or parse(js, m))
    if case == "an escaped key":
        raw = ('{"run_id": "r1", "model\\u005fid": "m-7", "metrics": [{"key": "a", "value": 1, '
               '"timestamp": 0, "step": 0, "model\\u005fid": "m-7"}]}')  # fmt: skip
    else:
        body = LOG_BODIES[case]
        if path == "log-metric":  # one metric: the batch's first, with the run
            body = {k: v for k, v in body.items() if k != "metrics"} | (
                body["metrics"][-1]
                if isinstance(body.get("metrics"), list) and body["metrics"]
                else {}
            )
        raw = json.dumps(body)

    def outcome(validate):
        asked.clear()
        parses.clear()
        url = f"/api/2.0/mlflow/runs/{path}"
        with auth.app.test_request_context(url, method="POST", data=raw,
                                           content_type="application/json"):  # fmt: skip
            try:
                return validate(), list(asked), len(parses)
            except MlflowException as exc:
                return exc.error_code, list(asked), len(parses)

    with auth.app.test_request_context(f"/api/2.0/mlflow/runs/{path}", method="POST"):
        from flask import request

        ours = auth._find_validator(request)
    mlflows = auth.validate_can_log_batch if path == "log-batch" else auth.validate_can_log_metric
    assert ours is not mlflows
    theirs_result, theirs_asked, _ = outcome(mlflows)
    ours_result, ours_asked, ours_parses = outcome(ours)
    if case == "a metric field spelled twice" and path == "log-batch":
        # MLflow's validator refuses it; ours asks for the run's grant and leaves the refusal to
        # the handler (tests/integration/test_platform.py sees the 400 and nothing logged).
        assert theirs_result == "INVALID_PARAMETER_VALUE" and (ours_result, ours_asked) == (
            True,
            [[]],
        )
        return
    assert (ours_result, ours_asked) == (theirs_result, theirs_asked)
    names_a_model = case.startswith(("a model", "an escaped")) or (
        case == "metrics not a list" and path == "log-batch"
    )
    assert ours_parses == (1 if names_a_model else 0)
    if case.startswith(("a model", "an escaped")):
        assert theirs_asked == [["m-7"]]  # the model's grant is asked for, as MLflow does
    elif case in ("a run spelled twice", "a metric field spelled twice"):  # log-metric: one level
        assert theirs_result == "INVALID_PARAMETER_VALUE" and theirs_asked == []
    else:
        assert theirs_asked == [[]] and theirs_result is True


@pytest.mark.parametrize("bare", [False, True])
@pytest.mark.parametrize("denied", [(), ("run",), ("logged_model",), ("run", "logged_model")])
@pytest.mark.parametrize("admin", [False, True])
def test_a_version_answer_is_redacted_as_mlflow_does_and_parsed_only_when_something_is_denied(
    monkeypatch, denied, admin, bare
):
    """Through MLflow's own alias-lookup redaction: the answer comes out byte for byte as
    MLflow's unwrapped redaction makes it (a version's run or model fields cleared where the
    caller is denied them), and it is parsed into a protobuf only for a non-admin denied some."""
    from flask import Response
    from mlflow.protos.model_registry_pb2 import GetModelVersionByAlias, ModelVersion
    from mlflow.server import auth
    from mlflow.utils.proto_json_utils import message_to_json

    parses = []
    parse = auth.parse_dict
    monkeypatch.setattr(auth, "parse_dict", lambda js, m: parses.append(1) or parse(js, m))
    monkeypatch.setattr(auth, "sender_is_admin", lambda: admin)
    monkeypatch.setattr(auth, "authenticate_request", lambda: SimpleNamespace(username="trainer"))
    tiers = {auth.RESOURCE_TYPE_RUN if t == "run" else auth.RESOURCE_TYPE_LOGGED_MODEL
             for t in denied}  # fmt: skip
    asked = []
    monkeypatch.setattr(auth, "_denied_sibling_tiers",
                        lambda user, ask: asked.append(ask) or set(ask) & tiers)  # fmt: skip
    version = (
        ModelVersion(name="m", version="3")
        if bare
        else ModelVersion(
            name="m", version="3", run_id="r-1", run_link="http://x/r-1", model_id="m-1"
        )
    )  # a bare version: no run or model field to clear
    body = message_to_json(GetModelVersionByAlias.Response(model_version=version))

    mlflows = Response(body, mimetype="application/json")
    auth._redact_version_response.__wrapped__(
        mlflows, GetModelVersionByAlias.Response(), lambda m: [m.model_version]
    )
    parsed_by_mlflow, asked_by_mlflow = len(parses), len(asked)
    ours = Response(body, mimetype="application/json")
    auth.redact_model_version_by_alias_siblings(ours)  # MLflow's handler, through the wrapper
    assert ours.get_data() == mlflows.get_data()
    assert len(parses) - parsed_by_mlflow == (1 if denied and not admin and not bare else 0)
    if bare:  # MLflow asks about grants only for versions with such fields: so do we
        assert len(asked) == asked_by_mlflow == 0
    else:
        assert (b'"r-1"' in ours.get_data()) == (admin or "run" not in denied)


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        ({"run_uuid": "mine", "runId": "yours"}, True),  # MLflow 3.17 checked mine, wrote yours
        ({"run_id": "mine", "runUuid": "yours"}, True),
        ({"run_id": "mine", "run_uuid": "yours"}, True),
        ({"run_id": "mine", "run_uuid": "mine", "runId": "mine"}, False),  # one run
        ({"run_id": "mine", "run_uuid": ""}, False),
        ({"run_uuid": "mine"}, False),
        ({"run_id": "mine", "key": "runId", "value": "yours"}, False),  # values are not keys
    ],
)
def test_a_body_naming_its_run_twice_with_different_ids_is_refused(body, refused):
    """The auth app reads the run's id from `run_id`, else `run_uuid`; MLflow's handlers from
    `run_id` or `runId`, else `run_uuid` or `runUuid`. A body where these disagree is refused
    before any grant is checked, so no request is checked on one run and written to another."""
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.server import auth

    with auth.app.test_request_context("/api/2.0/mlflow/runs/log-batch", method="POST",
                                       data=json.dumps(body), content_type="application/json"):  # fmt: skip
        if refused:
            with pytest.raises(MlflowException, match="names its run more than once") as err:
                auth._get_request_param("run_id")
            assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        else:
            assert auth._get_request_param("run_id") == "mine"

"""mlops_auth.request_guard: bounded bodies and no request the auth check and the handler could
read differently, before any of MLflow runs."""

from __future__ import annotations

import json

import pytest
from mlops_auth.request_guard import JSON, RAW, STREAM, RequestGuard, Routes

from tests.unit.infra.server_site.mlops_auth.asgi import Inner, request

LIMIT = 4096
KINDS = {"/upload": STREAM, "/form": RAW}


class FakeRoutes:
    def kind(self, method, path):
        return KINDS.get(path, JSON)


def guard(inner=None):
    inner = inner or Inner()
    return inner, RequestGuard(inner, routes=FakeRoutes(), max_body_bytes=LIMIT)


JSON_HEADERS = ((b"content-type", b"application/json"),)


def sized(body: bytes, content_type=b"application/json"):
    return ((b"content-type", content_type), (b"content-length", str(len(body)).encode()))


def test_a_json_body_of_a_json_route_reaches_the_app_whole():
    inner, app = guard()
    body = json.dumps({"run_id": "r", "metrics": [{"key": "k"}] * 50}).encode()
    assert request(app, "POST", headers=sized(body), body=body).status == 200
    chunked = ((b"content-type", b"application/json; charset=utf-8"),
               (b"transfer-encoding", b"chunked"))  # fmt: skip
    assert request(app, "POST", headers=chunked, chunks=[body[:10], body[10:]]).status == 200
    assert inner.bodies == [body, body]


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded",
                                          b"application/vnd.x+json", b"", b"multipart/form-data"])  # fmt: skip
@pytest.mark.parametrize("method", ["DELETE", "POST", "PATCH", "PUT"])
def test_a_body_that_is_not_json_on_a_json_route_is_refused(method, content_type):
    """MLflow's auth app reads a DELETE's parameters from the query unless the body is JSON,
    while the handler parses the body whatever its type."""
    inner, app = guard()
    body = b'{"name": "theirs"}'
    headers = sized(body, content_type) if content_type else ((b"content-length", b"18"),)
    answer = request(app, method, headers=headers, body=body, query=b"name=mine")
    assert answer.status == 400 and inner.calls == 0 and answer.read == 0
    assert b"Content-Type must be application/json" in answer.body
    assert answer.headers[b"connection"] == b"close"  # the unread body is not a next request


def test_a_json_body_with_a_query_string_is_refused():
    inner, app = guard()
    body = b'{"name": "theirs"}'
    answer = request(app, "DELETE", headers=sized(body), body=body, query=b"name=mine")
    assert answer.status == 400 and inner.calls == 0
    assert json.loads(answer.body)["message"].startswith(
        "A request with a JSON body takes no query"
    )


@pytest.mark.parametrize("body", [b'["r1"]', b'"{\\"name\\": \\"x\\"}"', b"null", b"1", b"nope",
                                  b"{", b'{"a": 1} x'])  # fmt: skip
def test_a_json_body_that_is_no_object_is_refused(body):
    """A JSON string is decoded twice by MLflow's handlers (old clients), never by its auth; a
    body that is no JSON made MLflow's log_batch answer 500."""
    inner, app = guard()
    answer = request(app, "POST", headers=sized(body), body=body)
    assert answer.status == 400 and inner.calls == 0
    assert json.loads(answer.body)["message"] in (
        "The request body must be a JSON object.",
        "The request body is not valid JSON.",
    )


@pytest.mark.parametrize(("query", "body", "refused"), [
    (b"run_id=%00", b"", True),
    (b"", b'{"run_id": "\\u0000"}', True),
    (b"", b'{"tags": [{"value": "a\\u0000b"}]}', True),
    (b"", b'{"value": "\\\\u0000"}', False),  # an escaped backslash, then the text u0000
])  # fmt: skip
def test_a_nul_character_in_a_parameter_is_refused(query, body, refused):
    """PostgreSQL stores no NUL: MLflow answered 500."""
    inner, app = guard()
    headers = sized(body) if body else ()
    answer = request(app, "POST" if body else "GET", headers=headers, body=body, query=query)
    assert (answer.status == 400) is refused and (inner.calls == 0) is refused


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_get_with_a_body_is_refused(method):
    """MLflow's handlers read a GET's body when its query string is empty; its auth never."""
    inner, app = guard()
    answer = request(app, method, headers=sized(b'{"name": "x"}'), body=b'{"name": "x"}')
    assert answer.status == 400 and inner.calls == 0
    chunked = request(app, method, headers=((b"transfer-encoding", b"chunked"),), chunks=[b"x"])
    assert chunked.status == 400 and inner.calls == 0


def test_requests_without_a_body_pass_as_they_are():
    inner, app = guard()
    assert request(app, "GET", query=b"name=mine").status == 200
    assert (
        request(app, "DELETE", query=b"name=mine", headers=((b"content-length", b"0"),)).status
        == 200
    )
    assert inner.calls == 2


def test_a_declared_body_over_the_limit_gets_413_before_a_byte_is_read():
    inner, app = guard()
    answer = request(app, "POST", headers=(*JSON_HEADERS, (b"content-length", b"300000000")),
                     chunks=[b"x" * 1024] * 10)  # fmt: skip
    assert answer.status == 413 and answer.read == 0 and inner.calls == 0
    assert answer.headers[b"connection"] == b"close"
    assert b"MLOPS_AUTH_MAX_BODY_BYTES" in answer.body


def test_a_chunked_body_is_read_only_to_the_limit():
    inner, app = guard()
    headers = (*JSON_HEADERS, (b"transfer-encoding", b"chunked"))
    answer = request(app, "POST", headers=headers, chunks=[b"{" + b" " * 1023] * 100)
    assert answer.status == 413 and inner.calls == 0
    assert LIMIT < answer.read <= LIMIT + 1024  # stopped at the chunk that crossed it


def test_an_artifact_upload_streams_unbounded_and_a_form_or_raw_body_is_bounded():
    inner, app = guard()
    big = [b"m" * 1024] * 20
    headers = ((b"content-type", b"application/octet-stream"), (b"content-length", b"20480"))
    assert request(app, "PUT", "/upload", headers=headers, chunks=big).status == 200
    assert inner.bodies == [b"".join(big)]
    form = ((b"content-type", b"application/x-www-form-urlencoded"),)
    assert request(app, "POST", "/form", headers=(*form, (b"content-length", b"3")),
                   body=b"a=b", query=b"x=1").status == 200  # fmt: skip
    assert (
        request(app, "POST", "/form", headers=(*form, (b"content-length", b"99999"))).status == 413
    )


def test_other_scopes_pass():
    import asyncio

    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    app = RequestGuard(inner, routes=FakeRoutes(), max_body_bytes=LIMIT)
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_routes_take_their_kind_of_body_from_mlflow_s_route_table():
    """Routes other than the artifact uploads (streamed), the UI's upload and sign-up form and
    OTLP traces are JSON routes, any route MLflow adds later included."""
    from flask import Flask
    from mlflow.server import handlers, serve_upload_artifact
    from mlflow.server.auth.routes import CREATE_USER_UI

    flask_app = Flask("t")
    flask_app.add_url_rule("/ajax-api/2.0/mlflow/upload-artifact", view_func=serve_upload_artifact,
                           methods=["POST"])  # fmt: skip
    flask_app.add_url_rule("/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>",
                           view_func=handlers._upload_artifact, methods=["PUT"])  # fmt: skip
    flask_app.add_url_rule(CREATE_USER_UI, "create_user_ui", lambda: "", methods=["POST"])
    flask_app.add_url_rule("/api/2.0/mlflow/runs/create", "create", lambda: "", methods=["POST"])
    routes = Routes(flask_app)
    assert routes.kind("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/a/model.pkl") == STREAM
    assert routes.kind("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/1/a/b") == STREAM
    assert routes.kind("POST", "/v1/traces") == RAW
    assert routes.kind("POST", "/ajax-api/2.0/mlflow/upload-artifact") == RAW
    assert routes.kind("POST", CREATE_USER_UI) == RAW
    for method, path in [("POST", "/api/2.0/mlflow/runs/create"),
                         ("DELETE", "/api/2.0/mlflow/registered-models/alias"),
                         ("POST", "/api/2.0/mlflow-artifacts/artifacts/1/a/b"),  # not a PUT
                         ("POST", "/api/9.9/mlflow/a-route-mlflow-adds-later")]:  # fmt: skip
        assert routes.kind(method, path) == JSON, (method, path)

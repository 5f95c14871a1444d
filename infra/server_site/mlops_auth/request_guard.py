"""Bounded bodies, and no request whose parameters MLflow's auth check and its handler could read
from different places; an ASGI middleware outside everything MLflow adds.

Why: MLflow's auth app reads a DELETE's parameters from the query string unless the body is JSON,
while the handler parses the body whatever its type; a GET's handler reads the body when the
query string is empty, the auth check never does. So a `text/plain` DELETE whose query names the
caller's own model and whose body names another deleted the other (MLflow 3.17). Here, before
any grant is checked:
- a GET (any method but POST, PUT, PATCH, DELETE) with a body gets 400;
- a body on a route whose handler parses it as JSON must be `application/json`, must be a JSON
  object, and comes with no query string (400 naming what is wrong);
- no parameter holds a NUL character (PostgreSQL stores none: MLflow answered 500).
Routes that take another body (artifact uploads, the UI's sign-up form, OTLP traces) are found by
their endpoints in MLflow's route table; every other route, one MLflow adds later included, is
held to the JSON rule.

Bodies: the WSGI bridge MLflow runs Flask behind buffers a whole body before the auth check
answers, so a body over `max_body_bytes` (declared, or counted as it arrives when chunked) gets
413 with the connection closed, signed in or not, before it is read. Artifact uploads through
the proxy stream to the store and are not bounded here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from mlops_auth.asgi import answer

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON, RAW, STREAM = "json", "raw", "stream"
KIND_CACHE_SIZE = 10_000
# A JSON string escape for NUL (an odd number of backslashes before it would escape the first).
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _native_kinds() -> list[tuple[object, str]]:
    """MLflow's FastAPI routes whose body is no JSON object, with the kind of body they take."""
    from mlflow.server import artifact_router, gateway_api, otel_api

    kinds = {
        artifact_router.upload_artifact: STREAM,  # streams to the artifact store
        otel_api.export_traces: RAW,  # OTLP protobuf or JSON
        gateway_api.raw_proxy: RAW,  # forwarded as it is (only with the AI gateway on)
    }
    found = [
        (route, kinds[route.endpoint])
        for router in (
            artifact_router.artifact_router,
            otel_api.otel_router,
            gateway_api.gateway_router,
        )
        for route in router.routes
        if getattr(route, "endpoint", None) in kinds
    ]
    if {kind for _, kind in found} != {STREAM, RAW}:
        from mlops_auth.compat import Incompatible

        raise Incompatible(
            "request_guard found no artifact upload or OTLP route in MLflow's routers"
        )
    return found


def _flask_raw_rules(flask_app):
    """A werkzeug map of MLflow's Flask routes whose body is no JSON object: the UI's artifact
    upload (raw bytes), the artifact proxy's Flask fallback, the UI's sign-up form."""
    from mlflow.server import handlers, serve_upload_artifact
    from mlflow.server.auth.routes import CREATE_USER_UI
    from werkzeug.routing import Map, Rule

    views = {serve_upload_artifact, handlers._upload_artifact}
    rules = [
        Rule(rule.rule, methods=rule.methods, endpoint=rule.endpoint)
        for rule in flask_app.url_map.iter_rules()
        if flask_app.view_functions.get(rule.endpoint) in views or rule.rule == CREATE_USER_UI
    ]
    if len(rules) < 3:
        from mlops_auth.compat import Incompatible

        raise Incompatible("request_guard found fewer raw-body Flask routes than MLflow 3.17 has")
    return Map(rules, strict_slashes=False).bind("")


class Routes:
    """What kind of body a route takes: JSON (the default), RAW or STREAM."""

    def __init__(self, flask_app) -> None:
        self._native = _native_kinds()
        self._flask = _flask_raw_rules(flask_app)
        self._seen: dict[tuple[str, str], str] = {}

    def kind(self, method: str, path: str) -> str:
        key = (method, path)
        found = self._seen.get(key)
        if found is None:
            found = self._kind(method, path)
            if len(self._seen) >= KIND_CACHE_SIZE:
                self._seen.clear()
            self._seen[key] = found
        return found

    def _kind(self, method: str, path: str) -> str:
        from starlette.routing import Match
        from werkzeug.exceptions import HTTPException
        from werkzeug.routing import RequestRedirect

        scope = {"type": "http", "path": path, "root_path": "", "method": method}
        for route, kind in self._native:
            if route.matches(scope)[0] is Match.FULL:
                return kind
        try:
            self._flask.match(path, method=method)
        except (HTTPException, RequestRedirect):
            return JSON
        return RAW


def json_refusal(body: bytes) -> str | None:
    """Why a JSON route's body is refused (None: it is a JSON object, as MLflow's auth reads it).
    Parsed here as Flask parses it; an old client's JSON-encoded string, which MLflow's handlers
    decode a second time and its auth never does, is no object."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "The request body is not valid JSON."
    if not isinstance(parsed, dict):
        return "The request body must be a JSON object."
    if NUL_ESCAPE.search(body):
        return "A parameter holds a NUL character."
    return None


def error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error_code": code, "message": message}).encode()


class RequestGuard:
    """The ASGI middleware (see the module's docstring)."""

    def __init__(self, app, *, routes: Routes, max_body_bytes: int) -> None:
        self.app = app
        self.routes = routes
        self.limit = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = chunked = None
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"content-type":
                content_type = value
        if b"%00" in scope["query_string"] or "\0" in scope["path"]:
            await answer(send, *error(400, "INVALID_PARAMETER_VALUE",
                                      "A parameter holds a NUL character."), close=True)  # fmt: skip
            return
        if not chunked and (length is None or length.strip() in (b"0", b"")):
            await self.app(scope, receive, send)  # no body: nothing to read twice
            return
        kind, refusal = self._refusal(scope, length, content_type)
        if kind == STREAM:
            await self.app(scope, receive, send)
            return
        if refusal is not None:
            await answer(send, *refusal, close=True)
            return
        body = await self._read(receive)
        if body is None:  # the client went away
            return
        if body is False:
            await answer(send, *self._too_large(), close=True)
            return
        if kind == JSON and body:
            refusal = json_refusal(body)
            if refusal is not None:
                await answer(send, *error(400, "INVALID_PARAMETER_VALUE", refusal))
                return
        await self.app(scope, _replay(body, receive), send)

    def _refusal(self, scope, length, content_type) -> tuple[str | None, tuple | None]:
        """The route's kind of body, and the answer that refuses the request (None: read the
        body, then hand it on; a STREAM route's is handed on unread)."""
        method = scope["method"]
        if method not in BODY_METHODS:
            return None, error(400, "INVALID_PARAMETER_VALUE",
                               f"A {method} request carries no body; send its parameters in "
                               "the query string.")  # fmt: skip
        kind = self.routes.kind(method, scope["path"])
        if kind == STREAM:
            return kind, None
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return kind, error(
                    400, "INVALID_PARAMETER_VALUE", "Content-Length is not a number."
                )
            if declared > self.limit:
                return kind, self._too_large()
        if kind == JSON:
            media = content_type.split(b";", 1)[0].strip().lower()
            if media != b"application/json":
                return kind, error(400, "INVALID_PARAMETER_VALUE",
                                   "Content-Type must be application/json for this route, got "
                                   f"{media.decode('latin-1') or 'none'}.")  # fmt: skip
            if scope["query_string"]:
                return kind, error(400, "INVALID_PARAMETER_VALUE",
                                   "A request with a JSON body takes no query string; "
                                   "send every parameter in the body.")  # fmt: skip
        return kind, None

    def _too_large(self) -> tuple[int, bytes]:
        return error(413, "RESOURCE_LIMIT_EXCEEDED",
                     f"The request body is over {self.limit} bytes (MLOPS_AUTH_MAX_BODY_BYTES).")  # fmt: skip

    async def _read(self, receive) -> bytes | bool | None:
        """The whole body; False past the limit (not read further); None if the client left."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive) -> Callable:
    """The body as one message, then whatever the client sends next (its disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

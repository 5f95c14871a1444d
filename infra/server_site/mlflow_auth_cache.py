"""Read caches for MLflow's basic-auth app, so an authenticated request costs about what an
unauthenticated one does.

The auth app checks every request against PostgreSQL: the user (twice: is it an admin, and its
id), the user's grants, for a run's endpoints the whole run (tags, params, latest metrics) only to
learn its experiment, and for a registry lookup the whole registered model only to learn whether
it is a prompt. Measured on the tracking benchmark, that is more database work than logging the
metric itself. This module is the auth config's `authorization_function`: it authenticates exactly
as MLflow's own basic auth does, and when the auth app first imports it, it puts caches in front of
those reads, in each server worker:

- the auth store's reads (`get_*`, `list_*`, `has_*`, `is_*`: users, grants, roles) are kept for
  the TTL; any other call to the store (a user created, a password or grant changed) empties this
  worker's cache at once. Other workers see the change within the TTL, as with MLflow's own
  credential cache (`auth_cache_ttl_seconds`, whose value this module reads for its TTL).
- a run's experiment never changes, so its permission requirements are kept (bounded, no TTL);
  whether a registry name is a model or a prompt (which MLflow learns by loading the registered
  model with all its versions) is kept for the TTL.

It also lets a request skip MLflow's FastAPI permission middleware where that middleware would
only hand it on (the tracking API's Flask routes, which Flask's before_request checks, and
/health): it is a Starlette BaseHTTPMiddleware, which runs the rest of the app in a task of its own
and streams the answer back, for every request (bypass_permission_middleware). Answers are parsed
back into protobufs for redaction, and log bodies for their logged models, only where that can
change anything. And one security fix: a body naming its run twice with different ids is refused
(_naming_one_run).

Nothing is cached by password: authentication goes through MLflow's credential cache, with one
check at a time per credential (SingleFlight), so an entry expiring under load costs one scrypt,
not one per request in flight. The server starts with this file's directory on PYTHONPATH
(infra.mlflow_server.render); it imports only what the server's environment has (MLflow and its
cachetools), because on the VM it runs from a file beside the server's virtualenv.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref

from cachetools import LRUCache, TTLCache
from mlflow.server import auth as _auth

READ_PREFIXES = ("get_", "list_", "has_", "is_", "user_has_")
UNCACHED_READS = ("authenticate_user",)  # by password: MLflow's credential cache, never ours
RUN_CACHE_SIZE = 100_000
STORE_CACHE_SIZE = 10_000
SCAN_CACHE_SIZE = 10_000  # paths: an artifact's path is part of its URL
PATCHED = (
    "store",
    "auth_config",
    "authenticate_request_basic_auth",
    "_run_requirement",
    "_registered_model_or_prompt_target",
    "_get_request_param",
    "_redact_run_response",
    "_redact_version_response",
    "_denied_sibling_tiers",
    "_MODEL_VERSION_SIBLING_FIELDS",
    "sender_is_admin",
    "authenticate_request",
    "_validate_can_update_run_and_models",
    "validate_can_log_metric",
    "validate_can_log_batch",
    "BEFORE_REQUEST_VALIDATORS",
    "BEFORE_REQUEST_HANDLERS",
    "_USER_AUTH_CACHE",
    "_USER_AUTH_CACHE_LOCK",
    "_auth_cache_key",
    # What the permission middleware's bypass reads (see bypass_permission_middleware).
    "add_fastapi_permission_middleware",
    "is_unprotected_route",
    "_find_fastapi_validator",
    "MLFLOW_BASIC_AUTH_FAIL_CLOSED",
    "_native_fastapi_routes",
    "_scope_matches_native_route",
)
# MLflow's FastAPI permission middleware, a Starlette BaseHTTPMiddleware around every request.
PERMISSION_MIDDLEWARE = "add_fastapi_permission_middleware.<locals>.fastapi_permission_middleware"
# What MLflow's redaction of a run answer (_redact_run_response) can clear: a run's model inputs
# and outputs, a metric's model id; as JSON keys, by field name and JSON name (its parser takes
# both).
RUN_MODEL_LINK_KEYS = (b'"model_inputs"', b'"model_outputs"', b'"model_id"',
                       b'"modelInputs"', b'"modelOutputs"', b'"modelId"')  # fmt: skip
MODEL_ID_KEYS = ("model_id", "modelId")  # a metric's logged model, by field or JSON name
RUN_ID_KEYS = ("run_id", "runId", "run_uuid", "runUuid")  # one run, two fields, two names each
# What MLflow's redaction of a version answer can clear (_MODEL_VERSION_SIBLING_FIELDS), as JSON.
VERSION_SIBLING_KEYS = tuple(f'"{key}"'.encode() for key in (
    "run_id", "run_link", "model_id", "model_params", "model_metrics",
    "runId", "runLink", "modelId", "modelParams", "modelMetrics",
))  # fmt: skip


class IncompatibleMlflow(ImportError):
    """The pinned MLflow changed what this module wraps; the server must not start half-cached."""


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


MISSING = object()
REQUEST_AUTH = "_mlflow_auth_cache_authorization"  # this request's answer, in Flask's g


class _Locked:
    """A cachetools cache behind a lock (cachetools' caches are not thread-safe; Flask handlers
    run on a thread pool)."""

    def __init__(self, cache) -> None:
        self._cache, self._lock = cache, threading.Lock()

    def get(self, key):
        with self._lock:
            return self._cache.get(key, MISSING)

    def put(self, key, value) -> None:
        with self._lock:
            self._cache[key] = value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


def _cache(size: int, ttl: float | None) -> _Locked:
    """At most `size` entries, least recently used out first, each kept `ttl` s (None: forever)."""
    return _Locked(LRUCache(size) if ttl is None else TTLCache(size, ttl))


class CachedAuthStore:
    """The auth app's store with its reads kept for `ttl` seconds; any other call clears them."""

    def __init__(self, store, ttl: float) -> None:
        self._store = store
        self.cache = _cache(STORE_CACHE_SIZE, ttl)

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


def _cached_run_requirement(original, cache: _Locked):
    # MLflow appends to the requirement list it gets (a logged model's, for log_metric and
    # log_batch), so the cache keeps a tuple and every caller gets a list of its own.
    def run_requirement(run_id: str, action: str):
        kept = cache.get((run_id, action))
        if kept is MISSING:
            resolved = original(run_id, action)
            if resolved is None:  # a missing run is asked again: it may be created
                return None
            kept = (resolved[0], tuple(resolved[1]))
            cache.put((run_id, action), kept)
        anchor, requirements = kept
        return anchor, list(requirements)

    return run_requirement


def _cached_model_target(original, read_name, cache: _Locked):
    def registered_model_or_prompt_target():
        name = read_name("name")  # raises MLflow's own 400 when the request names none
        target = cache.get(name)
        if target is not MISSING:
            return target
        target = original()
        if target is not None:
            cache.put(name, target)
        return target

    return registered_model_or_prompt_target


def install(module=_auth) -> CachedAuthStore:
    """Put the caches in front of the auth app's reads (idempotent)."""
    missing = [name for name in PATCHED if not hasattr(module, name)]
    if missing:
        raise IncompatibleMlflow(
            f"mlflow.server.auth has no {', '.join(missing)}: this MLflow is not the one "
            "mlflow_auth_cache was written for (see uv.lock); remove authorization_function "
            "from the auth config or update the module"
        )
    if isinstance(module.store, CachedAuthStore):
        return module.store
    ttl = module.auth_config.auth_cache_ttl_seconds
    module.store = CachedAuthStore(module.store, ttl)
    module._run_requirement = _cached_run_requirement(
        module._run_requirement, _cache(RUN_CACHE_SIZE, None)
    )
    module._registered_model_or_prompt_target = _cached_model_target(
        module._registered_model_or_prompt_target,
        module._get_request_param,
        _cache(STORE_CACHE_SIZE, ttl),
    )
    module._get_request_param = _naming_one_run(module._get_request_param)
    module._redact_run_response = _skipping_unlinked_runs(module._redact_run_response)
    module._redact_version_response = _skipping_undenied_versions(
        module, module._redact_version_response
    )
    _check_logging_without_parsing(module)
    bypass_permission_middleware(module)
    return module.store


def _naming_one_run(original):
    """A security fix, not a cache. MLflow's handlers take a run's id from `run_id` (or its JSON
    name `runId`), else `run_uuid` (`runUuid`); the auth app reads the keys `run_id`, else
    `run_uuid`, only. A body naming the run twice with different ids, {"run_uuid": mine,
    "runId": yours}, was authorised on one run and written to the other (MLflow 3.17: log_metric,
    log_batch, log_param, set_tag...). Such a body is refused (400) when the auth app asks for
    the run's id, before any grant is checked."""

    @functools.wraps(original)
    def get_request_param(param: str):
        if param in ("run_id", "run_uuid"):
            from flask import request

            body = request.get_json(silent=True) if request.method != "GET" else None
            if isinstance(body, dict):
                named = {json.dumps(body[k], sort_keys=True) for k in RUN_ID_KEYS
                         if body.get(k) not in (None, "")}  # fmt: skip
                if len(named) > 1:
                    from mlflow.exceptions import MlflowException

                    raise MlflowException.invalid_parameter_value(
                        "The request names its run more than once with different ids "
                        f"({', '.join(k for k in RUN_ID_KEYS if k in body)}); name it once."
                    )
        return original(param)

    return get_request_param


def _skipping_unlinked_runs(original):
    """MLflow's redaction of a run answer (get_run, search_runs) for a non-admin parses the whole
    answer back into a protobuf (~0.3 ms of a search_runs request's ~5 ms of server CPU, the
    largest part of what auth added to it by py-spy), then clears a run's model links where the
    caller may not see logged models. An answer with none of those fields has nothing to clear:
    it is handed on unparsed. Anything else, a streamed answer included, goes to MLflow's."""

    @functools.wraps(original)
    def redact_run_response(resp, response_message, runs_of):
        if not resp.is_streamed:
            body = resp.get_data()
            if not any(key in body for key in RUN_MODEL_LINK_KEYS):
                return None
        return original(resp, response_message, runs_of)

    return redact_run_response


def passes_through(module, scope, matches_native) -> bool:
    """Whether MLflow's FastAPI permission middleware would only hand this request on: its path
    needs no login, or it has no FastAPI validator and, in fail-closed mode (MLflow's default),
    is no native FastAPI route either (a Flask route: Flask's before_request checks it). The
    first branches of add_fastapi_permission_middleware, asked of the same functions;
    `matches_native(scope)` is its route scan (None: no app to scan). Anything else, an odd
    scope included, is left to the middleware."""
    path = scope.get("path")
    if scope.get("type") != "http" or not isinstance(path, str) or not path:
        return False
    if module.is_unprotected_route(path):
        return True
    if module._find_fastapi_validator(path, scope.get("method", "")) is not None:
        return False
    if not module.MLFLOW_BASIC_AUTH_FAIL_CLOSED.get():
        return True
    return matches_native is not None and not matches_native(scope)


def native_route_scan(module, app):
    """MLflow's fail-closed route scan for this app (whether a request is one of its native
    FastAPI routes), remembered per root path, path and method: the scan matched every native
    route's pattern for every request, ~4% of a worker's time under log_metric load. A route
    matches on those alone, except a Host route (by header): with one, nothing is remembered."""
    from starlette.routing import Host

    routes = module._native_fastapi_routes(app)
    if any(isinstance(route, Host) for route in routes):
        return lambda scope: module._scope_matches_native_route(routes, scope)
    seen = _cache(SCAN_CACHE_SIZE, None)

    def matches(scope) -> bool:
        key = (scope.get("root_path", ""), scope["path"], scope.get("method"))
        found = seen.get(key)
        if found is MISSING:
            found = module._scope_matches_native_route(routes, scope)
            seen.put(key, found)
        return found

    return matches


def _skipping_undenied_versions(module, original):
    """MLflow's redaction of a model version answer (get by alias, get, create, update...) for a
    non-admin parses the answer back into a protobuf, then clears a version's run and logged
    model fields where the caller is denied those (_denied_sibling_tiers). It asks that second,
    and only for versions that have such fields. Here an answer with none of those fields is
    handed on as it is, and for the others the question is asked first (from the auth caches):
    a caller denied neither has nothing cleared from any version, and the answer is handed on
    unparsed."""

    @functools.wraps(original)
    def redact_version_response(resp, response_message, versions_of):
        if not resp.is_streamed and not any(k in resp.get_data() for k in VERSION_SIBLING_KEYS):
            return None  # no version field to clear (MLflow would not ask about grants either)
        if not module.sender_is_admin():
            username = module.authenticate_request().username
            if not module._denied_sibling_tiers(
                username, tuple(module._MODEL_VERSION_SIBLING_FIELDS)
            ):
                return None
        return original(resp, response_message, versions_of)

    return redact_version_response


def names_no_model(body, metrics: str | None) -> bool:
    """Whether a request body (as MLflow normalises it) names no logged model: none of its
    metrics (the list under `metrics`; None: the body is one metric) has a model id key. Only
    a body of the expected shape counts; anything else is left to MLflow's parse."""
    if not isinstance(body, dict):
        return False
    items = [body] if metrics is None else body.get(metrics, [])
    return isinstance(items, list) and all(
        isinstance(item, dict) and not any(key in item for key in MODEL_ID_KEYS) for item in items
    )


def _check_logging_without_parsing(module) -> None:
    """log_metric's and log_batch's validators parse the body into a protobuf (~1 ms for 100
    metrics; the handler parses it again) only to find the logged models its metrics name, which
    need a grant too. Where the body names none (MLflow's own JSON, so an escaped key is read as
    the key it spells), they check the run alone, as MLflow's would with no model ids, after the
    same refusal of a top-level field spelled two ways (the run's id is one). A metric's field
    spelled two ways is left to the handler, which refuses it before it logs anything (400, where
    MLflow's validator answered 400 before the grant check: an unauthorised caller now gets
    403); walking every metric for it was half of this check's time. Otherwise MLflow's
    validator runs."""
    from mlflow.protos.service_pb2 import LogBatch, LogMetric
    from mlflow.server.handlers import (
        _get_normalized_request_json,
        _reject_conflicting_field_aliases,
    )

    def checking(original, message, metrics):
        def validate():
            from flask import request

            body = _get_normalized_request_json(request)
            if not names_no_model(body, metrics):
                return original()
            top = {k: v for k, v in body.items() if k != metrics} if metrics else body
            _reject_conflicting_field_aliases(top, message.DESCRIPTOR)
            return module._validate_can_update_run_and_models(set())

        return validate

    for original, message, metrics in (
        (module.validate_can_log_metric, LogMetric, None),
        (module.validate_can_log_batch, LogBatch, "metrics"),
    ):
        validate = checking(original, message, metrics)
        for table in (module.BEFORE_REQUEST_VALIDATORS, module.BEFORE_REQUEST_HANDLERS):
            for key, value in table.items():
                if value is original:
                    table[key] = validate


def bypass_permission_middleware(module=_auth) -> None:
    """Requests the permission middleware would only hand on go straight to the next app.

    It is a Starlette BaseHTTPMiddleware, which runs the rest of the app in a task of its own
    and streams the response back through a memory channel: py-spy put ~6% of a worker's time
    under log_metric load there, for the tracking API's requests, which it only hands on to
    Flask. The class's __call__ is wrapped (the app's middleware stack is built before the auth
    app imports this module, but each call looks __call__ up on the class); only the instance
    whose dispatch is MLflow's permission middleware is affected, and only where
    passes_through says so. The app's native routes are listed at its first request, as MLflow
    lists them when it adds the middleware (create_app adds no route after that). Idempotent."""
    from starlette.middleware.base import BaseHTTPMiddleware as middleware

    original = middleware.__call__
    if getattr(original, "bypasses", None) is PERMISSION_MIDDLEWARE:
        return

    scans = weakref.WeakKeyDictionary()  # per app (one per worker): its route scan

    def scan(app):
        if app is None:
            return None
        found = scans.get(app)
        if found is None:
            found = scans[app] = native_route_scan(module, app)
        return found

    async def __call__(self, scope, receive, send):
        dispatch = self.dispatch_func
        if (
            getattr(dispatch, "__qualname__", None) == PERMISSION_MIDDLEWARE
            and getattr(dispatch, "__module__", None) == module.__name__
            and passes_through(module, scope, scan(scope.get("app")))
        ):
            await self.app(scope, receive, send)
            return
        await original(self, scope, receive, send)

    __call__.bypasses = PERMISSION_MIDDLEWARE
    middleware.__call__ = __call__


class SingleFlight:
    """One call at a time per key: the others wait for it, then make their own (by then, for a
    password check, a hit in MLflow's credential cache)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict = {}

    def __call__(self, key, call):
        with self._guard:
            done = self._flights.get(key)
            if done is None:
                self._flights[key] = done = threading.Event()
                leader = True
            else:
                leader = False
        if not leader:
            done.wait()
            return call()
        try:
            return call()
        finally:
            with self._guard:
                del self._flights[key]
            done.set()


_checks = SingleFlight()


def authenticate_request_basic_auth():
    """MLflow's basic auth (the auth config's authorization_function), once per request, with
    one password check at a time per credential.

    The auth app authenticates a request more than once (its before_request hook, then for a
    non-admin's registry or run answer again to redact it, and once more to ask whether the
    caller is an admin); the answer is kept for the rest of the request (Flask's `g`). When a
    credential's cache entry expires under load, every request in flight with it would otherwise
    run werkzeug's scrypt at once (~0.1 s of CPU and 32 MiB each: 16 clients of one user made a
    2-worker server use 400 MB more for it)."""
    from flask import g

    found = g.get(REQUEST_AUTH, MISSING)
    if found is MISSING:
        found = _authenticate()
        setattr(g, REQUEST_AUTH, found)
    return found


def _authenticate():
    from flask import request

    creds = request.authorization
    if (
        _auth._USER_AUTH_CACHE is None
        or creds is None
        or not creds.username
        or creds.password is None
    ):
        return _auth.authenticate_request_basic_auth()
    key = _auth._auth_cache_key(creds.username, creds.password)
    with _auth._USER_AUTH_CACHE_LOCK:
        known = key in _auth._USER_AUTH_CACHE
    if known:
        return _auth.authenticate_request_basic_auth()
    return _checks(key, _auth.authenticate_request_basic_auth)


install()

"""Optimisation: requests MLflow's FastAPI permission middleware would only hand on skip it.

That middleware is a Starlette BaseHTTPMiddleware, which runs the rest of the app in a task of
its own and streams the answer back through a memory channel, for every request; for the
tracking API's requests (Flask routes, which Flask's before_request checks) and /health it only
hands them on. Its entry in the app's middleware list (Starlette's `user_middleware`, read when
the app builds its stack at the first request) is replaced by one that asks MLflow's own
functions, in the middleware's order, whether it would only hand this request on: the path needs
no login, or it has no FastAPI validator and, in fail-closed mode (MLflow's default), is no
native FastAPI route. Such requests go straight on; all others through the middleware as before.
"""

from __future__ import annotations

from mlops_auth.cache import MISSING, Locked
from mlops_auth.compat import Incompatible, require

NEEDS = ("is_unprotected_route", "_find_fastapi_validator", "MLFLOW_BASIC_AUTH_FAIL_CLOSED",
         "_native_fastapi_routes", "_scope_matches_native_route")  # fmt: skip
PERMISSION_MIDDLEWARE = "add_fastapi_permission_middleware.<locals>.fastapi_permission_middleware"
SCAN_CACHE_SIZE = 10_000  # paths: an artifact's path is part of its URL


def install(auth, app) -> None:
    require(auth, NEEDS, "middleware_bypass")
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    found = [
        i
        for i, entry in enumerate(app.user_middleware)
        if entry.cls is BaseHTTPMiddleware
        and getattr(entry.kwargs.get("dispatch"), "__qualname__", None) == PERMISSION_MIDDLEWARE
        and getattr(entry.kwargs.get("dispatch"), "__module__", None) == auth.__name__
    ]
    if len(found) != 1:
        raise Incompatible(f"middleware_bypass found {len(found)} permission middlewares, not 1")
    dispatch = app.user_middleware[found[0]].kwargs["dispatch"]
    scan = native_route_scan(auth, app)
    app.user_middleware[found[0]] = Middleware(
        SkippingIdle, dispatch=dispatch, passes=lambda scope: passes_through(auth, scope, scan)
    )


class SkippingIdle:
    """MLflow's permission middleware, skipped where `passes(scope)` says it only hands on."""

    def __init__(self, app, *, dispatch, passes) -> None:
        from starlette.middleware.base import BaseHTTPMiddleware

        self.app = app
        self.middleware = BaseHTTPMiddleware(app, dispatch=dispatch)
        self.passes = passes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.passes(scope):
            await self.app(scope, receive, send)
        else:
            await self.middleware(scope, receive, send)


def passes_through(auth, scope, matches_native) -> bool:
    """Whether the permission middleware would only hand this request on: the first branches of
    add_fastapi_permission_middleware, asked of the same functions; `matches_native(scope)` is
    its fail-closed route scan. Anything odd is left to the middleware."""
    path = scope.get("path")
    if not isinstance(path, str) or not path:
        return False
    if auth.is_unprotected_route(path):
        return True
    if auth._find_fastapi_validator(path, scope.get("method", "")) is not None:
        return False
    if not auth.MLFLOW_BASIC_AUTH_FAIL_CLOSED.get():
        return True
    return not matches_native(scope)


def native_route_scan(auth, app):
    """MLflow's fail-closed route scan (is this a native FastAPI route?), remembered per root
    path, path and method: it matches every native route's pattern for every request. A route
    matches on those alone, except a Host route (by header): with one, nothing is remembered."""
    from starlette.routing import Host

    routes = auth._native_fastapi_routes(app)
    if any(isinstance(route, Host) for route in routes):
        return lambda scope: auth._scope_matches_native_route(routes, scope)
    seen = Locked(SCAN_CACHE_SIZE, None)

    def matches(scope) -> bool:
        key = (scope.get("root_path", ""), scope["path"], scope.get("method"))
        found = seen.get(key)
        if found is MISSING:
            found = auth._scope_matches_native_route(routes, scope)
            seen.put(key, found)
        return found

    return matches

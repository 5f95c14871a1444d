"""mlops_auth.middleware_bypass: MLflow's permission middleware skipped only where it would only
hand a request on."""

from __future__ import annotations

from types import SimpleNamespace

from mlops_auth import middleware_bypass


def test_only_what_the_permission_middleware_would_hand_on_passes_it():
    """passes_through asks MLflow's own functions, in the middleware's order."""
    native, mode = ["/ajax-api/3.0/native"], {"fail_closed": True}
    module = SimpleNamespace(
        is_unprotected_route=lambda path: path == "/health",
        _find_fastapi_validator=lambda path, method: "v" if path == "/v1/traces" else None,
        MLFLOW_BASIC_AUTH_FAIL_CLOSED=SimpleNamespace(get=lambda: mode["fail_closed"]),
    )

    def through(path):
        scope = {"type": "http", "path": path, "method": "GET"}
        return middleware_bypass.passes_through(module, scope, lambda s: s["path"] in native)

    for mode["fail_closed"] in (True, False):
        assert through("/health") and through("/api/2.0/mlflow/runs/get")
        assert not through("/v1/traces")  # its validator runs
        assert not through("")
    mode["fail_closed"] = True
    assert not through("/ajax-api/3.0/native")  # fail-closed: the middleware may deny it
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
    matches = middleware_bypass.native_route_scan(module, SimpleNamespace(routes=routes))

    def scope(path, method="GET", root=""):
        return {"type": "http", "path": path, "method": method, "root_path": root}

    assert matches(scope("/native")) and matches(scope("/native"))
    assert not matches(scope("/native", "POST")) and not matches(scope("/api/x"))
    matches(scope("/native", root="/prefix"))  # another root path: asked again
    assert scans == ["/native", "/native", "/api/x", "/native"]  # once per key
    by_host = middleware_bypass.native_route_scan(
        module, SimpleNamespace(routes=[*routes, Host("h", None)])
    )
    by_host(scope("/native")), by_host(scope("/native"))
    assert scans[-2:] == ["/native", "/native"]  # asked every time

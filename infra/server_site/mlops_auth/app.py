"""The `mlops-auth` MLflow app: `create_app` builds MLflow's basic-auth app and wraps it.

`mlflow server --app-name mlops-auth` imports this module in its own process to learn whether
`create_app` is a factory, before it starts any worker: the version check and the settings are
read here, at import, so a server on an untested MLflow or with a bad setting exits at once with
one line instead of restarting workers that fail. Each worker then calls `create_app`.
"""

from __future__ import annotations

from mlops_auth import (
    compat,
    lean_log_check,
    lean_redaction,
    middleware_bypass,
    one_check,
    param_types,
    resource_cache,
    run_id_guard,
    settings,
    store_cache,
)
from mlops_auth.request_guard import RequestGuard, Routes
from mlops_auth.sign_in_guard import SignInGuard
from mlops_auth.threads import ThreadBound

compat.check_version()
SETTINGS = settings.from_environ()
# Optimisations that change the auth module before its app is built, in this order.
BEFORE = {
    "store_cache": store_cache.install,
    "resource_cache": resource_cache.install,
    "lean_redaction": lean_redaction.install,
    "lean_log_check": lean_log_check.install,
    "one_check": one_check.install,
}


def create_app():
    """MLflow's basic-auth app (a FastAPI app around its Flask app), with this plugin's guards
    outside it and its optimisations in it."""
    import os

    from mlflow.gateway.constants import MLFLOW_GATEWAY_AUTH_HEADER
    from mlflow.server import app as flask_app
    from mlflow.server import auth
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    if os.environ.get(STATIC_PREFIX_ENV_VAR):
        raise compat.Incompatible("the routes are matched without a --static-prefix; drop it")
    # The security guards first: they wrap what the optimisations then wrap again.
    param_types.install(auth)
    run_id_guard.install(auth)
    for name, install in BEFORE.items():
        if SETTINGS.on(name):
            install(auth)
    app = auth.create_app(flask_app)
    if not hasattr(app, "user_middleware"):
        raise compat.Incompatible("mlops-auth runs under uvicorn (MLflow's default), not Flask")
    if SETTINGS.on("middleware_bypass"):
        middleware_bypass.install(auth, app)
    # Starlette runs the middleware added last first: the request guard sees a request before
    # anything else, the sign-in guard next, then MLflow's own.
    app.add_middleware(
        SignInGuard,
        is_unprotected=auth.is_unprotected_route,
        gateway_header=MLFLOW_GATEWAY_AUTH_HEADER.encode(),
        sign_in_failures=SETTINGS.sign_in_failures,
        failed_password_seconds=SETTINGS.failed_password_seconds,
        good_seconds=auth.auth_config.auth_cache_ttl_seconds,
    )
    app.add_middleware(
        RequestGuard, routes=Routes(flask_app), max_body_bytes=SETTINGS.max_body_bytes
    )
    app.add_middleware(ThreadBound, limit=SETTINGS.request_threads)
    return app


def create_open_app():
    """MLflow's app without auth (anyone may do anything), with only the thread bound: the
    tracking benchmark's baseline, never a platform's server (`mlops-open`)."""
    from mlflow.server.fastapi_app import app

    app.add_middleware(ThreadBound, limit=SETTINGS.request_threads)
    return app

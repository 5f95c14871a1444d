"""The MLflow plugin (infra/server_site/mlops_auth), imported as the server imports it: from its
site directory. Each test that installs a module into MLflow's auth app gets the app back as it
was afterwards (`auth` fixture)."""

from __future__ import annotations

import sys

import pytest

from infra.mlflow_server import LOCAL_SITE_DIR

if str(LOCAL_SITE_DIR) not in sys.path:
    sys.path.insert(0, str(LOCAL_SITE_DIR))

TABLES = ("BEFORE_REQUEST_VALIDATORS", "BEFORE_REQUEST_HANDLERS")


@pytest.fixture
def auth():
    """mlflow.server.auth, restored after the test (what an install wrapped or replaced)."""
    from mlflow.server import auth as module

    saved = dict(vars(module))
    tables = {name: dict(getattr(module, name)) for name in TABLES}
    yield module
    for name, value in saved.items():
        if vars(module).get(name) is not value:
            setattr(module, name, value)
    for name, table in tables.items():
        getattr(module, name).clear()
        getattr(module, name).update(table)
    module.get_auth_func.cache_clear()

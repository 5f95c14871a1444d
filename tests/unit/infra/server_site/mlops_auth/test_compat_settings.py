"""mlops_auth.compat and .settings: the server starts only on a tested MLflow with good settings,
or says in one line why not."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from mlops_auth import compat, settings

ROOT = Path(__file__).resolve().parents[5]


def test_only_a_tested_mlflow_version_passes():
    assert compat.check_version() in compat.TESTED_MLFLOW
    with pytest.raises(SystemExit) as stop:
        compat.check_version("3.18.0")
    message = str(stop.value.code)
    assert message.startswith("mlops-auth: MLflow 3.18.0 is not a version") and "\n" not in message


def test_the_lock_pins_a_tested_mlflow_for_the_server_and_the_project_pins_it_exactly():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [mlflow] = [p for p in lock["package"] if p["name"] == "mlflow"]
    assert mlflow["version"] in compat.TESTED_MLFLOW
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for group in project["dependency-groups"].values() for d in group
            if isinstance(d, str) and d.startswith("mlflow[")]  # fmt: skip
    assert pins and all(d.endswith(f"=={mlflow['version']}") for d in pins), pins


def test_a_missing_name_stops_the_server_naming_it():
    import types

    module = types.SimpleNamespace(__name__="mlflow.server.auth", here=1)
    compat.require(module, ("here",), "x")
    with pytest.raises(
        SystemExit, match="x needs mlflow.server.auth._gone, which this MLflow lacks"
    ):
        compat.require(module, ("here", "_gone"), "x")


def test_defaults_are_on_and_bounded():
    s = settings.from_environ({})
    assert s.max_body_bytes == 16 * 1024 * 1024 and s.request_threads is None
    assert s.optimisations == frozenset(settings.OPTIMISATIONS)
    s = settings.from_environ({"MLOPS_AUTH_STORE_CACHE": "off", "MLOPS_AUTH_REQUEST_THREADS": "7"})
    assert not s.on("store_cache") and s.on("one_check") and s.request_threads == 7


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MLOPS_AUTH_STORE_CACHE": "no"}, "MLOPS_AUTH_STORE_CACHE must be on or off, got 'no'"),
        ({"MLOPS_AUTH_MAX_BODY_BYTES": "1k"}, "MLOPS_AUTH_MAX_BODY_BYTES must be a whole number"),
        ({"MLOPS_AUTH_MAX_BODY_BYTES": "10"}, "from 1024 to 1073741824, got '10'"),
        ({"MLOPS_AUTH_REQUEST_THREADS": "0"}, "MLOPS_AUTH_REQUEST_THREADS must be a whole number"),
        ({"MLOPS_AUTH_SIGN_IN_FAILURES": "-1"}, "MLOPS_AUTH_SIGN_IN_FAILURES must be"),
    ],
)
def test_a_bad_setting_stops_the_server_naming_it(environ, message):
    with pytest.raises(SystemExit) as stop:
        settings.from_environ(environ)
    assert message in str(stop.value.code) and str(stop.value.code).startswith("mlops-auth: ")

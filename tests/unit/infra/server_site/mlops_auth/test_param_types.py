"""mlops_auth.param_types: what the auth app reads is a JSON string or integer (a flag: a
boolean); anything else is a 400 naming the parameter, not a 500 from its store."""

from __future__ import annotations

import json

import pytest
from mlops_auth import param_types


@pytest.fixture
def auth(auth):
    param_types.install(auth)
    return auth


@pytest.mark.parametrize("value", [["r1"], {"id": "r1"}, 1.5, None, True, 7])
@pytest.mark.parametrize("param", ["run_id", "experiment_id", "name", "username"])
def test_an_id_of_another_json_type_is_refused_naming_it(auth, param, value):
    from mlflow.exceptions import MlflowException

    body = json.dumps({param: value})
    context = auth.app.test_request_context(
        "/api/2.0/mlflow/x", method="POST", data=body, content_type="application/json"
    )
    with context, pytest.raises(MlflowException, match=f"'{param}' must be a string") as err:
        auth._get_request_param(param)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(("param", "value"), [("run_id", "r1"), ("experiment_id", "7"),
                                              ("is_admin", True), ("is_admin", False)])  # fmt: skip
def test_strings_and_the_admin_flag_pass(auth, param, value):
    body = json.dumps({param: value})
    with auth.app.test_request_context("/api/2.0/mlflow/x", method="PATCH", data=body,
                                       content_type="application/json"):  # fmt: skip
        assert auth._get_request_param(param) == value


def test_the_admin_flag_is_a_boolean(auth):
    from mlflow.exceptions import MlflowException

    context = auth.app.test_request_context(
        "/x", method="PATCH", data='{"is_admin": "true"}', content_type="application/json"
    )
    with context, pytest.raises(MlflowException, match="'is_admin' must be a boolean, got str"):
        auth._get_request_param("is_admin")


def test_query_parameters_are_strings_and_pass(auth):
    with auth.app.test_request_context("/x?run_id=r1&run_id=r2", method="GET"):
        assert auth._get_request_param("run_id") == "r1"

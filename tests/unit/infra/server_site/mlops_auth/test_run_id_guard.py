"""mlops_auth.run_id_guard: a body names its run once."""

from __future__ import annotations

import pytest
from mlops_auth import run_id_guard


@pytest.fixture
def auth(auth):
    run_id_guard.install(auth)
    return auth


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
def test_a_body_naming_its_run_twice_with_different_ids_is_refused(auth, body, refused):
    """The auth app reads the run's id from `run_id`, else `run_uuid`; MLflow's handlers from
    `run_id` or `runId`, else `run_uuid` or `runUuid`. A body where these disagree is refused
    before any grant is checked, so no request is checked on one run and written to another."""
    import json

    from mlflow.exceptions import MlflowException

    with auth.app.test_request_context("/api/2.0/mlflow/runs/log-batch", method="POST",
                                       data=json.dumps(body), content_type="application/json"):  # fmt: skip
        if refused:
            with pytest.raises(MlflowException, match="names its run more than once") as err:
                auth._get_request_param("run_id")
            assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        else:
            assert auth._get_request_param("run_id") == "mine"

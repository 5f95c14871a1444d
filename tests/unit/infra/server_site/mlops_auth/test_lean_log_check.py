"""mlops_auth.lean_log_check: log_metric and log_batch authorised as MLflow's validators do,
without parsing a body that names no logged model."""

from __future__ import annotations

import pytest
from mlops_auth import lean_log_check


@pytest.fixture
def auth(auth):
    lean_log_check.install(auth)
    return auth


LOG_BODIES = {
    "no model": {"run_id": "r1", "metrics": [{"key": "loss", "value": 1, "timestamp": 0, "step": 0}]},
    "a model": {"run_id": "r1", "metrics": [{"key": "a", "value": 1, "timestamp": 0, "step": 0},
                                            {"key": "b", "value": 1, "timestamp": 0, "step": 0,
                                             "model_id": "m-7"}]},
    "a model by JSON name": {"run_id": "r1", "metrics": [{"key": "a", "value": 1, "timestamp": 0,
                                                          "step": 0, "modelId": "m-7"}]},
    "metrics not a list": {"run_id": "r1", "metrics": {"key": "a"}},
    "a run spelled twice": {"run_id": "r1", "runId": "r2", "metrics": []},
    "no metrics": {"run_id": "r1", "params": [{"key": "p", "value": "1"}]},
    "a metric field spelled twice": {"run_id": "r1", "metrics": [
        {"key": "a", "value": 1, "timestamp": 0, "step": 0, "dataset_name": "d", "datasetName": "e"}
    ]},
}  # fmt: skip


@pytest.mark.parametrize("path", ["log-batch", "log-metric"])
@pytest.mark.parametrize("case", [*LOG_BODIES, "an escaped key"])
def test_logging_is_authorised_as_mlflow_does_without_parsing_a_body_that_names_no_model(
    auth, monkeypatch, path, case
):
    """The validator the auth app finds for log-batch and log-metric asks for the same grants as
    MLflow's own (the run, plus every logged model the metrics name) or refuses the same body,
    and parses the body into a protobuf only when it names a model; a key spelled with a JSON
    escape counts as the key it spells."""
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.server import handlers

    asked, parses = [], []
    monkeypatch.setattr(auth, "_validate_can_update_run_and_models",
                        lambda model_ids: asked.append(sorted(model_ids)) or True)  # fmt: skip
    parse = handlers.parse_dict
    monkeypatch.setattr(handlers, "parse_dict", lambda js, m: parses.append(1) or parse(js, m))
    if case == "an escaped key":
        raw = ('{"run_id": "r1", "model\\u005fid": "m-7", "metrics": [{"key": "a", "value": 1, '
               '"timestamp": 0, "step": 0, "model\\u005fid": "m-7"}]}')  # fmt: skip
    else:
        body = LOG_BODIES[case]
        if path == "log-metric":  # one metric: the batch's first, with the run
            body = {k: v for k, v in body.items() if k != "metrics"} | (
                body["metrics"][-1]
                if isinstance(body.get("metrics"), list) and body["metrics"]
                else {}
            )
        raw = json.dumps(body)

    def outcome(validate):
        asked.clear()
        parses.clear()
        url = f"/api/2.0/mlflow/runs/{path}"
        with auth.app.test_request_context(url, method="POST", data=raw,
                                           content_type="application/json"):  # fmt: skip
            try:
                return validate(), list(asked), len(parses)
            except MlflowException as exc:
                return exc.error_code, list(asked), len(parses)

    with auth.app.test_request_context(f"/api/2.0/mlflow/runs/{path}", method="POST"):
        from flask import request

        ours = auth._find_validator(request)
    mlflows = auth.validate_can_log_batch if path == "log-batch" else auth.validate_can_log_metric
    assert ours is not mlflows
    theirs_result, theirs_asked, _ = outcome(mlflows)
    ours_result, ours_asked, ours_parses = outcome(ours)
    if case == "a metric field spelled twice" and path == "log-batch":
        # MLflow's validator refuses it; ours asks for the run's grant and leaves the refusal to
        # the handler (tests/integration/test_platform.py sees the 400 and nothing logged).
        assert theirs_result == "INVALID_PARAMETER_VALUE" and (ours_result, ours_asked) == (
            True,
            [[]],
        )
        return
    assert (ours_result, ours_asked) == (theirs_result, theirs_asked)
    names_a_model = case.startswith(("a model", "an escaped")) or (
        case == "metrics not a list" and path == "log-batch"
    )
    assert ours_parses == (1 if names_a_model else 0)
    if case.startswith(("a model", "an escaped")):
        assert theirs_asked == [["m-7"]]  # the model's grant is asked for, as MLflow does
    elif case in ("a run spelled twice", "a metric field spelled twice"):  # log-metric: one level
        assert theirs_result == "INVALID_PARAMETER_VALUE" and theirs_asked == []
    else:
        assert theirs_asked == [[]] and theirs_result is True

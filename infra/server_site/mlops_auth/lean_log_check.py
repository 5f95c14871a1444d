"""Optimisation: log_metric and log_batch are authorised without parsing a body that names no
logged model.

MLflow's validators for them parse the whole body into a protobuf (the handler parses it again)
only to find the logged models its metrics name, which need a grant too. Where the body names none
(read from MLflow's own normalised JSON, so an escaped key counts as the key it spells), the run
alone is checked, as MLflow's validator would with no model ids, after the same refusal of a
top-level field spelled two ways (the run's id is one). A metric's field spelled two ways is left
to the handler, which refuses it before it logs anything. Anything else goes to MLflow's
validator. The model-id keys are the Metric message's field and JSON names.
"""

from __future__ import annotations

from mlops_auth.compat import require

NEEDS = ("validate_can_log_metric", "validate_can_log_batch",
         "_validate_can_update_run_and_models", "BEFORE_REQUEST_VALIDATORS",
         "BEFORE_REQUEST_HANDLERS")  # fmt: skip


def names_no_model(body, metrics: str | None, model_id_keys) -> bool:
    """Whether a body names no logged model: none of its metrics (the list under `metrics`; None:
    the body is one metric) has a model id key. Only a body of the expected shape counts."""
    if not isinstance(body, dict):
        return False
    items = [body] if metrics is None else body.get(metrics, [])
    return isinstance(items, list) and all(
        isinstance(item, dict) and not any(key in item for key in model_id_keys) for item in items
    )


def install(auth) -> None:
    require(auth, NEEDS, "lean_log_check")
    from mlflow.protos.service_pb2 import LogBatch, LogMetric, Metric
    from mlflow.server import handlers

    require(handlers, ("_get_normalized_request_json", "_reject_conflicting_field_aliases"),
            "lean_log_check")  # fmt: skip
    model_id = Metric.DESCRIPTOR.fields_by_name["model_id"]
    model_id_keys = (model_id.name, model_id.json_name)

    def checking(original, message, metrics):
        def validate():
            from flask import request

            body = handlers._get_normalized_request_json(request)
            if not names_no_model(body, metrics, model_id_keys):
                return original()
            top = {k: v for k, v in body.items() if k != metrics} if metrics else body
            handlers._reject_conflicting_field_aliases(top, message.DESCRIPTOR)
            return auth._validate_can_update_run_and_models(set())

        return validate

    replaced = 0
    for original, message, metrics in (
        (auth.validate_can_log_metric, LogMetric, None),
        (auth.validate_can_log_batch, LogBatch, "metrics"),
    ):
        validate = checking(original, message, metrics)
        for table in (auth.BEFORE_REQUEST_VALIDATORS, auth.BEFORE_REQUEST_HANDLERS):
            for key, value in table.items():
                if value is original:
                    table[key] = validate
                    replaced += 1
    if not replaced:
        from mlops_auth.compat import Incompatible

        raise Incompatible("lean_log_check found no route validated by MLflow's log validators")

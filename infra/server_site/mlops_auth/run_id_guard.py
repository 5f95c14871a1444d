"""A body names its run once.

MLflow's handlers take a run's id from `run_id` (or its JSON name `runId`), else `run_uuid`
(`runUuid`); its auth app reads the keys `run_id`, else `run_uuid`, only. A body naming the run
twice with different ids, {"run_uuid": mine, "runId": yours}, was authorised on one run and
written to the other (MLflow 3.17: log_metric, log_batch, log_param, set_tag...). Such a body is
refused (400) when the auth app asks for the run's id, before any grant is checked. A GET's
handler reads only `run_id` and `run_uuid` from the query, in the auth app's order, so only
bodies need the check.
"""

from __future__ import annotations

import functools
import json

from mlops_auth.compat import require

RUN_ID_KEYS = ("run_id", "runId", "run_uuid", "runUuid")  # one run, two fields, two names each
NEEDS = ("_get_request_param",)


def install(auth) -> None:
    require(auth, NEEDS, "run_id_guard")
    auth._get_request_param = naming_one_run(auth._get_request_param)


def naming_one_run(original):
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

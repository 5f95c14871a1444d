"""A parameter the auth app reads is a JSON string (a flag: a boolean).

MLflow's auth app hands what it reads from a body to its store as it is: a list or an object as
`run_id` reached the database layer and came back as a 500 with a traceback, an integer as a
model's name failed on `.strip()` (MLflow 3.17). Its handlers would refuse the same body with a
400 after the auth check (the fields are strings in MLflow's protobufs). Here the auth app's
reads refuse it first, naming the parameter.
"""

from __future__ import annotations

import functools

from mlops_auth.compat import require

FLAGS = frozenset({"is_admin"})  # the one parameter the auth app reads as a boolean
NEEDS = ("_get_request_param",)


def install(auth) -> None:
    require(auth, NEEDS, "param_types")
    auth._get_request_param = typed(auth._get_request_param)


def kind_of(value) -> str:
    return {dict: "an object", list: "a list", float: "a number with a fraction",
            bool: "a boolean", type(None): "null", int: "a number"}.get(type(value), type(value).__name__)  # fmt: skip


def typed(original):
    @functools.wraps(original)
    def get_request_param(param: str):
        value = original(param)
        wanted = bool if param in FLAGS else str
        if type(value) is not wanted:
            from mlflow.exceptions import MlflowException

            expected = "a boolean" if param in FLAGS else "a string"
            raise MlflowException.invalid_parameter_value(
                f"Parameter '{param}' must be {expected}, got {kind_of(value)}."
            )
        return value

    return get_request_param

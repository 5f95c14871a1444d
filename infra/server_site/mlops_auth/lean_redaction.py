"""Optimisation: an answer is parsed back into a protobuf for redaction only when something in it
may be redacted.

MLflow redacts a non-admin's run answers (get_run, search_runs) by parsing the whole answer back
into a protobuf and clearing a run's model links (its model inputs and outputs, a metric's model
id) where the caller may not see logged models; a version answer (get, by alias, create,
update...) likewise, clearing the fields of `_MODEL_VERSION_SIBLING_FIELDS` where the caller is
denied runs or logged models. An answer that names none of those fields has nothing to clear and
is handed on as it is; for a version answer that does, the caller's denials are asked first (from
the auth caches), and a caller denied nothing gets the answer unparsed. The fields' JSON keys are
read from MLflow's own table and protobuf descriptors, so a field MLflow adds is watched too.
"""

from __future__ import annotations

import functools

from mlops_auth.compat import Incompatible, require

NEEDS = ("_redact_run_response", "_redact_version_response", "_denied_sibling_tiers",
         "_MODEL_VERSION_SIBLING_FIELDS", "sender_is_admin", "authenticate_request")  # fmt: skip
# What MLflow's _withhold_denied_run_model_links clears: (message, field).
RUN_MODEL_LINKS = (("RunInputs", "model_inputs"), ("RunOutputs", "model_outputs"),
                   ("Metric", "model_id"))  # fmt: skip


def json_keys(descriptor, fields) -> tuple[bytes, ...]:
    """A message's fields as the JSON keys of MLflow's answers (its parser takes both names)."""
    keys = []
    for name in fields:
        field = descriptor.fields_by_name.get(name)
        if field is None:
            raise Incompatible(f"lean_redaction: {descriptor.name} has no field {name}")
        keys += [f'"{field.name}"'.encode(), f'"{field.json_name}"'.encode()]
    return tuple(dict.fromkeys(keys))


def install(auth) -> None:
    require(auth, NEEDS, "lean_redaction")
    from mlflow.protos import model_registry_pb2, service_pb2

    run_keys = tuple(
        key
        for message, field in RUN_MODEL_LINKS
        for key in json_keys(getattr(service_pb2, message).DESCRIPTOR, (field,))
    )
    sibling_fields = [f for fields in auth._MODEL_VERSION_SIBLING_FIELDS.values() for f in fields]
    version_keys = json_keys(model_registry_pb2.ModelVersion.DESCRIPTOR, sibling_fields)
    auth._redact_run_response = skipping_unlinked_runs(auth._redact_run_response, run_keys)
    auth._redact_version_response = skipping_undenied_versions(
        auth, auth._redact_version_response, version_keys
    )


def skipping_unlinked_runs(original, keys: tuple[bytes, ...]):
    @functools.wraps(original)
    def redact_run_response(resp, response_message, runs_of):
        if not resp.is_streamed and not any(key in resp.get_data() for key in keys):
            return None
        return original(resp, response_message, runs_of)

    return redact_run_response


def skipping_undenied_versions(auth, original, keys: tuple[bytes, ...]):
    @functools.wraps(original)
    def redact_version_response(resp, response_message, versions_of):
        if not resp.is_streamed and not any(key in resp.get_data() for key in keys):
            return None  # no version field to clear (MLflow would not ask about grants either)
        if not auth.sender_is_admin():
            username = auth.authenticate_request().username
            if not auth._denied_sibling_tiers(username, tuple(auth._MODEL_VERSION_SIBLING_FIELDS)):
                return None
        return original(resp, response_message, versions_of)

    return redact_version_response

"""mlops_auth.lean_redaction: answers come out byte for byte as MLflow's redaction makes them,
and are parsed into a protobuf only where something may be cleared."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlops_auth import lean_redaction


@pytest.fixture
def auth(auth):
    lean_redaction.install(auth)
    return auth


def _run_answer(kind: str):
    """A search_runs answer of two runs, the second with the model link `kind` (or none)."""
    from mlflow.protos.service_pb2 import Metric, Run, SearchRuns

    runs = []
    for i in range(2):
        run = Run()
        run.info.run_id, run.info.experiment_id = f"r{i}", "1"
        run.data.metrics.append(Metric(key="loss", value=0.5, timestamp=1, step=i))
        runs.append(run)
    linked = runs[1]
    if kind == "input":
        linked.inputs.model_inputs.add(model_id="m-1")
    elif kind == "output":
        linked.outputs.model_outputs.add(model_id="m-1", step=3)
    elif kind == "metric":
        linked.data.metrics[0].model_id = "m-1"
    elif kind == "an output with no model id":
        linked.outputs.model_outputs.add(step=3)
    elif kind == "an empty input":
        linked.inputs.model_inputs.add()
    elif kind == "a key's name as a value":  # no link, but it cannot tell: parsed
        linked.data.tags.add(key="note", value="model_id")
    return SearchRuns.Response(runs=runs)


@pytest.mark.parametrize("denied", [False, True])
@pytest.mark.parametrize("admin", [False, True])
@pytest.mark.parametrize(
    "kind",
    ["none", "input", "output", "metric", "an output with no model id", "an empty input",
     "a key's name as a value"],
)  # fmt: skip
def test_a_run_answer_is_redacted_as_mlflow_does_and_parsed_only_when_it_has_model_links(
    auth, monkeypatch, kind, denied, admin
):
    """Through MLflow's own search_runs redaction: the answer comes out byte for byte as MLflow's
    unwrapped redaction makes it (model links cleared where the caller may not see logged
    models), and an answer with no model link is not parsed into a protobuf at all."""
    from flask import Response
    from mlflow.utils.proto_json_utils import message_to_json

    parses = []
    parse = auth.parse_dict
    monkeypatch.setattr(auth, "parse_dict", lambda js, m: parses.append(1) or parse(js, m))
    monkeypatch.setattr(auth, "sender_is_admin", lambda: admin)
    monkeypatch.setattr(auth, "authenticate_request", lambda: SimpleNamespace(username="trainer"))
    tiers = {auth.RESOURCE_TYPE_LOGGED_MODEL} if denied else set()
    monkeypatch.setattr(auth, "_denied_sibling_tiers", lambda user, asked: set(asked) & tiers)
    body = message_to_json(_run_answer(kind))

    mlflows = Response(body, mimetype="application/json")
    auth._redact_run_response.__wrapped__(mlflows, type(_run_answer(kind))(), lambda m: m.runs)
    assert len(parses) == (0 if admin else 1)
    ours = Response(body, mimetype="application/json")
    auth.redact_search_runs_model_links(ours)  # MLflow's handler, through the wrapper
    assert ours.get_data() == mlflows.get_data()
    assert len(parses) == (0 if admin else 1 if kind == "none" else 2)
    if kind in ("input", "output", "metric"):
        assert (b'"m-1"' in ours.get_data()) == (admin or not denied)
    if kind in ("an output with no model id", "an empty input") and denied and not admin:
        assert ours.get_data() != body.encode()  # MLflow cleared the link: so did we


@pytest.mark.parametrize("bare", [False, True])
@pytest.mark.parametrize("denied", [(), ("run",), ("logged_model",), ("run", "logged_model")])
@pytest.mark.parametrize("admin", [False, True])
def test_a_version_answer_is_redacted_as_mlflow_does_and_parsed_only_when_something_is_denied(
    auth, monkeypatch, denied, admin, bare
):
    """Through MLflow's own alias-lookup redaction: the answer comes out byte for byte as
    MLflow's unwrapped redaction makes it (a version's run or model fields cleared where the
    caller is denied them), and it is parsed into a protobuf only for a non-admin denied some."""
    from flask import Response
    from mlflow.protos.model_registry_pb2 import GetModelVersionByAlias, ModelVersion
    from mlflow.utils.proto_json_utils import message_to_json

    parses = []
    parse = auth.parse_dict
    monkeypatch.setattr(auth, "parse_dict", lambda js, m: parses.append(1) or parse(js, m))
    monkeypatch.setattr(auth, "sender_is_admin", lambda: admin)
    monkeypatch.setattr(auth, "authenticate_request", lambda: SimpleNamespace(username="trainer"))
    tiers = {auth.RESOURCE_TYPE_RUN if t == "run" else auth.RESOURCE_TYPE_LOGGED_MODEL
             for t in denied}  # fmt: skip
    asked = []
    monkeypatch.setattr(auth, "_denied_sibling_tiers",
                        lambda user, ask: asked.append(ask) or set(ask) & tiers)  # fmt: skip
    version = (
        ModelVersion(name="m", version="3")
        if bare
        else ModelVersion(
            name="m", version="3", run_id="r-1", run_link="http://x/r-1", model_id="m-1"
        )
    )  # a bare version: no run or model field to clear
    body = message_to_json(GetModelVersionByAlias.Response(model_version=version))

    mlflows = Response(body, mimetype="application/json")
    auth._redact_version_response.__wrapped__(
        mlflows, GetModelVersionByAlias.Response(), lambda m: [m.model_version]
    )
    parsed_by_mlflow, asked_by_mlflow = len(parses), len(asked)
    ours = Response(body, mimetype="application/json")
    auth.redact_model_version_by_alias_siblings(ours)  # MLflow's handler, through the wrapper
    assert ours.get_data() == mlflows.get_data()
    assert len(parses) - parsed_by_mlflow == (1 if denied and not admin and not bare else 0)
    if bare:  # MLflow asks about grants only for versions with such fields: so do we
        assert len(asked) == asked_by_mlflow == 0
    else:
        assert (b'"r-1"' in ours.get_data()) == (admin or "run" not in denied)


def test_the_watched_keys_are_mlflow_s_fields_by_both_their_names(auth):
    """Read from MLflow's own table (_MODEL_VERSION_SIBLING_FIELDS) and protobuf descriptors."""
    from mlflow.protos.model_registry_pb2 import ModelVersion

    keys = lean_redaction.json_keys(ModelVersion.DESCRIPTOR, ("run_id", "model_metrics"))
    assert keys == (b'"run_id"', b'"runId"', b'"model_metrics"', b'"modelMetrics"')
    with pytest.raises(SystemExit, match="ModelVersion has no field run_uuid"):
        lean_redaction.json_keys(ModelVersion.DESCRIPTOR, ("run_uuid",))

"""The model API against a real model in a temporary MLflow store: validation, readiness,
predictions, metrics, and following the alias."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import mlflow
import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from services.model_api.app import create_app
from services.model_api.routes.predict import read_body
from services.model_api.schemas import MAX_BATCH
from services.model_api.settings import Settings
from training import train as train_module
from training.data import features
from training.models import Candidate
from trip_model.serving import ModelHolder

RIDE = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s")


@pytest.fixture(scope="module")
def api_store(tmp_path_factory, months):
    """One store with the `api` model's champion, trained once for the module (once per test,
    training was most of this module's time). Tests that register versions use a model of
    their own in it."""
    folder = tmp_path_factory.mktemp("api-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    saved, cwd = os.environ.get("MLFLOW_TRACKING_URI"), os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.chdir(folder)  # a file artifact store lands here
    mlflow.set_tracking_uri(uri)
    try:
        [result] = train_module.run(
            str(months.train), str(months.val), [Candidate("linear")], model_name="api"
        )
    finally:
        os.chdir(cwd)
        os.environ.pop("MLFLOW_TRACKING_URI")
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
        mlflow.set_tracking_uri(None)
    return SimpleNamespace(uri=uri, folder=folder, champion=result)


@pytest.fixture
def champion(api_store, monkeypatch):
    """The shared store as this test's registry, and its `api` champion."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", api_store.uri)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.chdir(api_store.folder)
    mlflow.set_tracking_uri(api_store.uri)
    yield api_store.champion
    mlflow.set_tracking_uri(None)


@pytest.fixture
def client(champion):
    app = create_app(Settings(model_name="api", refresh_seconds=0.2, retry_seconds=0.2))
    with TestClient(app) as client:
        wait_for(lambda: client.get("/ready").status_code == 200)
        yield client


def test_predict_returns_duration_and_version(client, champion):
    body = client.post("/predict", json=RIDE).json()
    assert body["model_version"] == champion.version
    model = mlflow.pyfunc.load_model(f"models:/api/{champion.version}")
    import pandas as pd

    expected = model.predict(pd.DataFrame({"PU_DO": ["43_151"], "trip_distance": [1.8]}))[0]
    assert body["duration"] == pytest.approx(expected)


def test_batch_returns_one_duration_per_ride_in_order(client):
    rides = [RIDE, {**RIDE, "trip_distance": 12.0}, RIDE]
    body = client.post("/predict/batch", json={"rides": rides}).json()
    single = client.post("/predict", json=RIDE).json()["duration"]
    assert len(body["durations"]) == 3
    assert body["durations"][0] == pytest.approx(single) == pytest.approx(body["durations"][2])
    assert body["durations"][1] > body["durations"][0]


def test_oversized_batch_is_refused_with_the_limit(client):
    resp = client.post("/predict/batch", json={"rides": [RIDE] * (MAX_BATCH + 1)})
    assert resp.status_code == 413
    assert f"limit of {MAX_BATCH}" in resp.json()["detail"]
    assert client.post("/predict/batch", json={"rides": [RIDE] * MAX_BATCH}).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("PULocationID", 0),
        ("PULocationID", 266),
        ("DOLocationID", "151"),
        ("DOLocationID", 151.5),
        ("PULocationID", True),
        ("trip_distance", -0.1),
        ("trip_distance", 200.0),
        ("trip_distance", "far"),
        ("trip_distance", None),
        # A JSON number only: README promises a 422 for these (pydantic's lax mode took them).
        ("trip_distance", "1.8"),
        ("trip_distance", True),
        ("trip_distance", False),
        ("PULocationID", "43"),
        ("PULocationID", 43.5),
    ],
)
def test_invalid_field_is_a_422_naming_it(client, field, value):
    resp = client.post("/predict", json={**RIDE, field: value})
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["detail"]] == [field]


def test_missing_and_unknown_fields_are_named(client):
    ride = {k: v for k, v in RIDE.items() if k != "trip_distance"} | {"tip": 3}
    fields = {e["field"] for e in client.post("/predict", json=ride).json()["detail"]}
    assert fields == {"trip_distance", "tip"}


def test_invalid_ride_in_a_batch_names_its_position(client):
    resp = client.post("/predict/batch", json={"rides": [RIDE, {**RIDE, "DOLocationID": 999}]})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "rides.1.DOLocationID"


def test_empty_batch_and_broken_json_are_4xx(client):
    assert client.post("/predict/batch", json={"rides": []}).status_code == 422
    resp = client.post(
        "/predict", content=b'{"PULocationID": 4', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422


def test_broken_json_and_wrong_content_type_say_what_is_wrong(client):
    resp = client.post(
        "/predict", content=b'{"PULocationID": 4', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    [error] = resp.json()["detail"]
    assert error["field"] == "body" and error["type"] == "json_invalid"
    resp = client.post(
        "/predict", content=b"PULocationID=4", headers={"content-type": "text/plain"}
    )
    assert resp.status_code == 415 and "application/json" in resp.json()["detail"]
    assert client.post("/predict", content=b"{}", headers={}).status_code == 415


def test_health_ready_and_openapi(client, champion):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["model_version"] == champion.version
    # The baseline is an sklearn pipeline, so requests call it directly (checked at load).
    assert ready["predict_path"].startswith("direct (FunctionTransformer -> DictVectorizer")
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/health", "/ready"} <= set(paths)
    # The bodies the routes validate themselves are still described, self-contained.
    ride = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(ride["required"]) == {"PULocationID", "DOLocationID", "trip_distance"}
    assert ride["properties"]["PULocationID"]["maximum"] == 265
    batch = paths["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]
    rides = batch["schema"]["properties"]["rides"]
    assert rides["maxItems"] == MAX_BATCH and rides["items"]["properties"] == ride["properties"]
    assert "$ref" not in str(batch)


def test_lightgbm_champion_is_served_directly_with_the_pyfunc_predictions(local_store, months):
    [result] = train_module.run(
        str(months.train), str(months.val), [Candidate("lightgbm")], model_name="gbm"
    )
    rides = [
        {"PULocationID": pu, "DOLocationID": do, "trip_distance": d}
        for pu, do, d in zip(
            range(1, 266, 3), range(265, 0, -3), [i * 0.37 for i in range(89)], strict=True
        )
    ]
    app = create_app(Settings(model_name="gbm", refresh_seconds=60, retry_seconds=0.2))
    with TestClient(app) as client:
        ready = wait_for(lambda: (r := client.get("/ready")).status_code == 200 and r.json())
        assert ready["predict_path"].startswith("region table (")
        batch = client.post("/predict/batch", json={"rides": rides}).json()
        single = [client.post("/predict", json=r).json()["duration"] for r in rides[:10]]
    import pandas as pd

    frame = features(pd.DataFrame(rides))  # training's feature code, not the API's
    expected = mlflow.pyfunc.load_model(f"models:/gbm/{result.version}").predict(frame)
    assert batch["model_version"] == result.version
    assert batch["durations"] == pytest.approx(list(expected), rel=1e-12, abs=1e-12)
    assert single == batch["durations"][:10]


def test_metrics_count_requests_and_predictions(client, champion):
    def value(text: str, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

    before = client.get("/metrics").text
    client.post("/predict/batch", json={"rides": [RIDE] * 5})
    client.post("/predict", json={**RIDE, "PULocationID": 0})
    after = client.get("/metrics").text
    label = f'model_api_predictions_total{{model_version="{champion.version}"}}'
    assert value(after, label) - value(before, label) == 5
    bad = 'model_api_requests_total{method="POST",route="/predict",status="422"}'
    assert value(after, bad) - value(before, bad) == 1
    assert "model_api_request_seconds_bucket" in after


def test_metric_labels_stay_bounded_whatever_the_client_sends(client):
    """A made-up method or path is counted under "other" and "unmatched", never as a new series
    (each label value is a time series kept for the process's life)."""
    for i in range(3):
        client.request(f"BREW{i}", "/predict")
        client.get(f"/no-such-path-{i}")
    text = client.get("/metrics").text
    series = [line for line in text.splitlines() if line.startswith("model_api_requests_total{")]
    assert not any("BREW" in line or "no-such-path" in line for line in series)
    assert any('method="other",route="/predict",status="405"' in line for line in series)
    assert any('method="GET",route="unmatched",status="404"' in line for line in series)


def test_responses_are_the_documented_models_as_json(client, champion):
    """The hot routes build their responses themselves (DirectRoute): each is JSON with the
    fields, types and headers the OpenAPI document declares."""
    from services.model_api.schemas import BatchPrediction, Prediction

    single = client.post("/predict", json=RIDE)
    batch = client.post("/predict/batch", json={"rides": [RIDE] * 3})
    for resp in (single, batch):
        assert resp.headers["content-type"] == "application/json"
        assert int(resp.headers["content-length"]) == len(resp.content)
        assert len(resp.headers["x-request-id"]) == 32
    assert Prediction.model_validate_json(single.content).model_version == champion.version
    assert len(BatchPrediction.model_validate_json(batch.content).durations) == 3
    health = client.get("/health")
    assert health.headers["content-type"] == "application/json" and health.json() == {
        "status": "ok"
    }


def test_not_ready_without_a_champion_then_ready_once_one_exists(local_store, months):
    app = create_app(Settings(model_name="later", refresh_seconds=0.2, retry_seconds=0.2))
    with TestClient(app) as client:
        resp = wait_for(
            lambda: (r := client.get("/ready")).json()["reason_code"] != "loading" and r
        )
        assert resp.status_code == 503 and "later@champion" in resp.json()["reason"]
        # What a deploy script acts on: the alias points nowhere, so train first.
        assert resp.json()["reason_code"] == "no_model_version"
        assert client.post("/predict", json=RIDE).status_code == 503
        assert client.get("/health").status_code == 200
        [result] = train_module.run(
            str(months.train), str(months.val), [Candidate("linear")], model_name="later"
        )
        ready = wait_for(lambda: (r := client.get("/ready")).status_code == 200 and r.json())
        assert ready["model_version"] == result.version


def test_follows_the_alias_and_keeps_serving_when_a_new_version_is_broken(champion, months):
    """On a model of its own (it registers versions), in the shared store."""

    def register(kind: str):
        [result] = train_module.run(
            str(months.train), str(months.val), [Candidate(kind)], model_name="follow"
        )
        return result

    register("linear")
    app = create_app(Settings(model_name="follow", refresh_seconds=0.2, retry_seconds=0.2))
    with TestClient(app) as client:
        wait_for(lambda: client.get("/ready").status_code == 200)
        better = register("lightgbm")
        wait_for(
            lambda: client.post("/predict", json=RIDE).json()["model_version"] == better.version
        )
        # A version whose files are gone: the API must keep serving the one it has.
        broken = register("linear")
        source = MlflowClient().get_model_version("follow", broken.version).source  # models:/id
        location = MlflowClient().get_logged_model(source.rsplit("/", 1)[-1]).artifact_location
        shutil.rmtree(Path(urlparse(location).path))
        MlflowClient().set_registered_model_alias("follow", "champion", broken.version)
        ready = wait_for(lambda: (r := client.get("/ready").json()).get("last_refresh_error") and r)
        assert ready["model_version"] == better.version
        assert client.post("/predict", json=RIDE).json()["model_version"] == better.version


def test_a_whole_number_zone_is_an_integer_as_the_openapi_document_says(client):
    """JSON (and the OpenAPI schema's "integer") do not tell 117 from 117.0."""
    as_int = client.post("/predict", json={**RIDE, "PULocationID": 117})
    as_float = client.post(
        "/predict",
        content=b'{"PULocationID": 117.0, "DOLocationID": 151.0, "trip_distance": 1.8}',
        headers={"content-type": "application/json"},
    )
    assert as_int.status_code == as_float.status_code == 200
    assert as_float.json()["duration"] == as_int.json()["duration"]
    schema = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    props = schema["content"]["application/json"]["schema"]["properties"]
    assert props["PULocationID"]["type"] == "integer" and props["trip_distance"]["type"] == "number"


@pytest.fixture
def small_client(champion):
    app = create_app(Settings(model_name="api", max_body_bytes=4096, retry_seconds=0.2))
    with TestClient(app) as client:
        wait_for(lambda: client.get("/ready").status_code == 200)
        yield client


def test_a_body_over_the_limit_is_a_413_before_it_is_read(small_client):
    """A declared length over the limit is refused without reading the body, a chunked one as
    soon as it passes the limit: a 100 MB body never reaches the worker's memory."""
    big = (
        b'{"rides": ['
        + b",".join([b'{"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}'] * 200)
        + b"]}"
    )
    resp = small_client.post(
        "/predict/batch", content=big, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.json()["detail"] == (
        "body exceeds the limit of 4096 bytes (MODEL_API_MAX_BODY_BYTES)"
    )
    # A chunked body (no length declared) is read only up to the limit.
    sent = []

    async def receive():
        sent.append(1)  # 10,000 x 1 KiB offered; nothing past the limit is asked for
        return {"type": "http.request", "body": b" " * 1024, "more_body": len(sent) < 10_000}

    app = SimpleNamespace(state=SimpleNamespace(settings=Settings(max_body_bytes=4096)))
    request = Request({"type": "http", "method": "POST", "headers": [], "app": app}, receive)
    with pytest.raises(HTTPException) as refused:
        asyncio.run(read_body(request))
    assert refused.value.status_code == 413
    assert len(sent) == 5  # 5 KiB read: the first chunk past 4 KiB
    # Under the limit all is as before.
    assert small_client.post("/predict", json=RIDE).status_code == 200


def test_the_default_limit_admits_a_full_batch_with_room(client):
    assert Settings().max_body_bytes >= 10 * len(
        json.dumps({"rides": [RIDE] * MAX_BATCH}, indent=2).encode()
    )


def test_a_422_echoes_only_a_short_prefix_of_a_long_bad_value(client):
    resp = client.post("/predict", json={**RIDE, "trip_distance": "x" * 1_000_000})
    assert resp.status_code == 422
    assert len(resp.content) < 1000
    [error] = resp.json()["detail"]
    assert error["field"] == "trip_distance"
    assert error["input"] == "x" * 64 + "..."


def test_every_answer_besides_200_is_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()
    for path in ("/predict", "/predict/batch"):
        responses = paths["paths"][path]["post"]["responses"]
        assert {"200", "413", "415", "422", "503"} <= set(responses), path
        for code in ("413", "415", "422", "503"):
            assert "application/json" in responses[code]["content"], (path, code)
    schemas = paths["components"]["schemas"]
    assert set(schemas["ValidationErrors"]["properties"]) == {"detail"}
    assert {"field", "type", "msg", "input"} <= set(schemas["FieldError"]["properties"])


def test_a_registry_outage_shows_in_ready_within_a_refresh_and_the_model_keeps_serving(
    champion, api_store
):
    """MLflow's client retried 7 times with backoff: a running API said plain ready for minutes
    after the registry died. Now the next refresh says so, /predict goes on serving the loaded
    version, and /ready tells how stale its knowledge is."""
    settings = Settings(
        model_name="api", refresh_seconds=0.3, retry_seconds=0.3, registry_timeout_seconds=1
    )
    app = create_app(settings)
    with tuned_worker(settings), TestClient(app) as client, blackhole() as dead:
        wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.get("/ready").json()["registry"] == "ok"
        mlflow.set_tracking_uri(dead)  # the registry stops answering
        started = time.monotonic()
        ready = wait_for(
            lambda: (r := client.get("/ready").json())["registry"] != "ok" and r, timeout=30
        )
        assert time.monotonic() - started < 8  # 1 retry of a 1 s timeout, not minutes
        assert ready["status"] == "ready" and ready["registry"] == "registry_unreachable"
        assert ready["stale_seconds"] > 0
        # The real cause (the registry's silence), not a client misconfiguration.
        assert "did not answer: ReadTimeoutError" in ready["last_refresh_error"]
        assert client.post("/predict", json=RIDE).json()["model_version"] == champion.version


def test_a_fresh_instance_says_why_at_once_and_is_ready_soon_after_the_registry_is(
    champion, api_store
):
    settings = Settings(model_name="api", retry_seconds=0.5, registry_timeout_seconds=1)
    app = create_app(settings)
    with tuned_worker(settings), blackhole() as dead:
        mlflow.set_tracking_uri(dead)
        with TestClient(app) as client:
            started = time.monotonic()
            ready = wait_for(
                lambda: (r := client.get("/ready").json())["reason_code"] != "loading" and r,
                timeout=30,
            )
            assert time.monotonic() - started < 15
            assert ready["reason_code"] == "registry_unreachable"
            assert "did not answer: ReadTimeoutError (timeout 1 s" in ready["reason"]
            mlflow.set_tracking_uri(api_store.uri)  # the registry is back
            back = time.monotonic()
            wait_for(lambda: client.get("/ready").status_code == 200, timeout=30)
            assert time.monotonic() - back < 12  # the next retry (0.5 s) after the one in flight


@contextlib.contextmanager
def tuned_worker(settings):
    """This process tuned as a worker is (worker.tune: the registry client's retries and
    timeout), and as it was again afterwards."""
    import sys

    from services.model_api import worker

    keys = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    saved, interval = {k: os.environ.get(k) for k in keys}, sys.getswitchinterval()
    worker.tune(settings)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_holder_runs_its_after_swap_once_per_new_model(champion, months):
    """The worker's heap freeze (after_swap) follows each swap, not each refresh."""
    swaps = []
    holder = ModelHolder(Settings(model_name="api"), after_swap=lambda: swaps.append(1))
    assert holder.refresh() is True and swaps == [1]
    assert holder.refresh() is False and swaps == [1]  # the same version: nothing to settle


@contextlib.contextmanager
def blackhole():
    """An HTTP address that accepts connections and never answers (a dead or firewalled
    server: the slow kind of outage, unlike a refused connection)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_the_routes_read_their_headers_as_starlette_would():
    """One pass over the raw headers: the first of a repeated header counts, absent ones are ""."""
    from services.model_api.routes.predict import wanted_headers

    raw = [(b"host", b"x"), (b"x-request-id", b"first"), (b"content-type", b"application/json"),
           (b"x-request-id", b"second"), (b"content-length", b"12")]  # fmt: skip
    request = Request({"type": "http", "headers": raw})
    assert wanted_headers(request) == [
        request.headers.get(k, "") for k in ("content-type", "content-length", "x-request-id")
    ]
    assert wanted_headers(request) == ["application/json", "12", "first"]
    assert wanted_headers(Request({"type": "http", "headers": []})) == ["", "", ""]

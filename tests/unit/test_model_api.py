"""The model API against a real model in a temporary MLflow store: validation, readiness,
predictions, metrics, and following the alias."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from services.model_api.app import create_app
from services.model_api.schemas import MAX_BATCH
from services.model_api.settings import Settings
from training import train as train_module
from training.data import features
from training.models import Candidate

RIDE = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s")


@pytest.fixture
def champion(local_store, months):
    [result] = train_module.run(
        str(months.train), str(months.val), [Candidate("linear")], model_name="api"
    )
    return result


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
        assert ready["predict_path"] == "direct (FunctionTransformer -> LightGBM booster)"
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


def test_follows_the_alias_and_keeps_serving_when_a_new_version_is_broken(client, champion, months):
    [better] = train_module.run(
        str(months.train), str(months.val), [Candidate("lightgbm")], model_name="api"
    )
    wait_for(lambda: client.post("/predict", json=RIDE).json()["model_version"] == better.version)

    # A version whose files are gone: the API must keep serving the one it has.
    [broken] = train_module.run(
        str(months.train), str(months.val), [Candidate("linear")], model_name="api"
    )
    source = MlflowClient().get_model_version("api", broken.version).source  # models:/<model id>
    location = MlflowClient().get_logged_model(source.rsplit("/", 1)[-1]).artifact_location
    shutil.rmtree(Path(urlparse(location).path))
    MlflowClient().set_registered_model_alias("api", "champion", broken.version)
    ready = wait_for(lambda: (r := client.get("/ready").json()).get("last_refresh_error") and r)
    assert ready["model_version"] == better.version
    assert client.post("/predict", json=RIDE).json()["model_version"] == better.version

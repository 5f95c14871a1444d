"""The platform for real: PostgreSQL + moto_server (S3) + `mlflow server` with auth, as rendered
for the VM, the training CLI and the model API as processes, all on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

import local_platform as c

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RIDE = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}


def train_cli(env: dict[str, str], months, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--train",
            str(months.train),
            "--val",
            str(months.val),
            *args,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def client_for(platform):
    from mlflow import MlflowClient

    os.environ.update(platform.env())
    return MlflowClient(tracking_uri=platform.tracking_uri)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_anonymous_and_wrong_credentials_are_refused(platform):
    url = f"{platform.tracking_uri}/api/2.0/mlflow/experiments/search"
    ca = str(platform.ca_cert)

    def get(auth=None) -> int:
        return requests.get(
            url, params={"max_results": 1}, auth=auth, timeout=10, verify=ca
        ).status_code

    assert get() == 401
    assert get((platform.admin.username, "not-the-password")) == 401
    assert get((platform.admin.username, platform.admin.password)) == 200


def test_the_server_speaks_https_only_with_a_certificate_from_the_platform_ca(platform, tmp_path):
    """A client that trusts the platform's CA gets through; one that does not (the system's
    CAs, or another CA) fails verification; plain HTTP to the port gets no MLflow answer."""
    health = f"{platform.tracking_uri}/health"
    assert health.startswith("https://")
    assert requests.get(health, timeout=10, verify=str(platform.ca_cert)).text == "OK"
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(health, timeout=10)
    other = c.make_tls(tmp_path / "other")
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(health, timeout=10, verify=str(other.ca_cert))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(health.replace("https://", "http://"), timeout=10)
    # MLflow's own client, as every workload uses it: with the CA path, and without.
    env = platform.env("model-api")
    script = (
        "from mlflow import MlflowClient; "
        "print(MlflowClient().get_registered_model('nyc-taxi-duration').name)"
    )
    ok = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env},
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip() == "nyc-taxi-duration", ok.stderr[-1500:]
    env.pop("MLFLOW_TRACKING_SERVER_CERT_PATH")
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    refused = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_each_workload_user_has_its_grants_and_no_more(platform, months):
    """model-api reads the registry and the model's artifacts and writes nothing; trainer
    trains and moves aliases of nyc-taxi-duration but manages no users."""
    ca = str(platform.ca_cert)
    trainer, reader = platform.users["trainer"], platform.users["model-api"]
    api = f"{platform.tracking_uri}/api/2.0/mlflow"

    def call(user, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{api}/{path}", auth=(user.username, user.password),
                                timeout=30, verify=ca, **kw)  # fmt: skip

    trained = train_cli(platform.env("trainer"), months, "--model", "linear")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "nyc-taxi-duration v" in trained.stdout and "@champion" in trained.stdout
    version = call(reader, "GET", "registered-models/alias",
                   params={"name": "nyc-taxi-duration", "alias": "champion"})  # fmt: skip
    assert version.status_code == 200, version.text
    number = version.json()["model_version"]["version"]
    experiment = call(reader, "GET", "experiments/get-by-name",
                      params={"experiment_name": "nyc-taxi-duration"}).json()  # fmt: skip
    experiment_id = experiment["experiment"]["experiment_id"]
    # Reads: the model's files, through the server's proxy.
    from mlflow import artifacts

    os.environ.update(platform.env("model-api"))
    try:
        path = artifacts.download_artifacts(f"models:/nyc-taxi-duration/{number}")
        assert os.path.exists(os.path.join(path, "MLmodel"))
    finally:
        os.environ.update(platform.env())
    # Writes: refused.
    run = {"experiment_id": experiment_id}
    assert call(reader, "POST", "runs/create", json=run).status_code == 403
    alias = {"name": "nyc-taxi-duration", "alias": "champion", "version": number}
    assert call(reader, "POST", "registered-models/alias", json=alias).status_code == 403
    assert call(reader, "DELETE", "registered-models/alias",
                json={"name": "nyc-taxi-duration", "alias": "champion"}).status_code == 403  # fmt: skip
    assert call(trainer, "POST", "registered-models/alias", json=alias).status_code == 200
    # Users are the admin's business only.
    new_user = {"username": unique("intruder"), "password": "a-long-password-123"}
    for user in (trainer, reader):
        assert call(user, "POST", "users/create", json=new_user).status_code == 403
        grant = {"experiment_id": experiment_id, "username": user.username, "permission": "MANAGE"}
        assert call(user, "POST", "experiments/permissions/update", json=grant).status_code == 403


def test_a_grant_revoked_or_a_user_deleted_counts_at_once_despite_the_auth_caches(platform):
    """The server caches what the auth app reads of users and grants (mlops_auth.store_cache); a change
    made through the worker that serves the next request (this server has one) counts at once."""
    from mlflow.server import get_app_client

    ca = str(platform.ca_cert)
    api = f"{platform.tracking_uri}/api/2.0/mlflow"
    admin = client_for(platform)  # as the admin
    auth = get_app_client("basic-auth", tracking_uri=platform.tracking_uri)
    experiment = admin.create_experiment(unique("cache"))
    run = admin.create_run(experiment).info.run_id
    name, password = unique("someone"), "a-long-password-123"
    auth.create_user(name, password)

    def log(run_id: str = run) -> int:
        metric = {"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": 0, "step": 0}
        return requests.post(f"{api}/runs/log-metric", json=metric, auth=(name, password),
                             timeout=30, verify=ca).status_code  # fmt: skip

    assert [log(), log()] == [403, 403]  # the second from the caches
    auth.grant_user_permission(name, "experiment", experiment, "EDIT")
    assert [log(), log()] == [200, 200]
    assert log(uuid.uuid4().hex) == 403  # a run that does not exist is not let through
    auth.revoke_user_permission(name, "experiment", experiment)
    assert log() == 403
    auth.grant_user_permission(name, "experiment", experiment, "EDIT")
    assert log() == 200
    auth.delete_user(name)
    assert log() == 401


def test_many_concurrent_metric_batches_never_run_a_worker_s_pool_dry(platform):
    """MLflow's log_batch holds two of a pool's connections at once. This server has one worker
    and pools of 15 (infra.mlflow_server.pool_for); 32 batches at once, unbounded, let every
    connection be held by a request waiting for its second, for the pool's 30 s timeout (seen
    at 16). The worker runs at most half a pool's worth at once (mlops_auth.threads),
    so each batch answers promptly and none fails."""
    from concurrent.futures import ThreadPoolExecutor

    clients, rounds = 32, 3
    api = f"{platform.tracking_uri}/api/2.0/mlflow"
    login = (platform.admin.username, platform.admin.password)
    admin = client_for(platform)
    experiment = admin.create_experiment(unique("batches"))
    runs = [admin.create_run(experiment).info.run_id for _ in range(clients)]
    ready = threading.Barrier(clients)

    def log_batches(i: int) -> list[tuple[int, float]]:
        answers = []
        with requests.Session() as http:
            for r in range(rounds):
                metrics = [{"key": "loss", "value": 1.0, "timestamp": 0, "step": r * 100 + s}
                           for s in range(100)]  # fmt: skip
                ready.wait(timeout=60)
                began = time.monotonic()
                answer = http.post(f"{api}/runs/log-batch", json={"run_id": runs[i], "metrics": metrics},
                                   auth=login, timeout=60, verify=str(platform.ca_cert))  # fmt: skip
                answers.append((answer.status_code, time.monotonic() - began))
        return answers

    with ThreadPoolExecutor(clients) as pool:
        answers = [a for batch in pool.map(log_batches, range(clients)) for a in batch]
    assert {status for status, _ in answers} == {200}
    assert max(took for _, took in answers) < 20  # the pool's timeout is 30 s
    history = admin.get_metric_history(runs[0], "loss")
    assert sorted(m.step for m in history) == list(range(rounds * 100))


def test_a_metric_batch_with_a_field_spelled_two_ways_is_refused_and_nothing_is_logged(platform):
    """The auth app checks a batch that names no logged model without parsing its metrics
    (mlops_auth.lean_log_check); a metric spelling one field two ways is then refused by the handler,
    before anything is logged, as MLflow's validator refused it before."""
    from mlflow import MlflowClient

    from infra.mlflow_server import TRAINING_EXPERIMENT

    os.environ.update(platform.env("trainer"))
    trainer = MlflowClient(tracking_uri=platform.tracking_uri)
    experiment = trainer.get_experiment_by_name(TRAINING_EXPERIMENT).experiment_id
    run = trainer.create_run(experiment).info.run_id
    user = platform.users["trainer"]
    metric = {"key": "loss", "value": 1.0, "timestamp": 0, "step": 0}
    api = f"{platform.tracking_uri}/api/2.0/mlflow/runs/log-batch"

    def post(*metrics) -> requests.Response:
        return requests.post(api, json={"run_id": run, "metrics": list(metrics)}, timeout=30,
                             auth=(user.username, user.password), verify=str(platform.ca_cert))  # fmt: skip

    refused = post(metric | {"step": 1}, metric | {"dataset_name": "d", "datasetName": "e"})
    assert refused.status_code == 400 and "dataset_name" in refused.text
    assert trainer.get_metric_history(run, "loss") == []
    assert post(metric).status_code == 200
    assert [m.step for m in trainer.get_metric_history(run, "loss")] == [0]


def test_a_run_named_twice_with_different_ids_is_refused_and_the_other_run_is_untouched(platform):
    """MLflow 3.17's auth app checked {"run_uuid": mine, "runId": theirs} against the caller's
    own run and its handlers wrote to the other: the trainer could log into any run. The
    server refuses such a body (mlops_auth.run_id_guard) on every run endpoint."""
    from mlflow import MlflowClient

    from infra.mlflow_server import TRAINING_EXPERIMENT

    admin = client_for(platform)
    theirs = admin.create_run(admin.create_experiment(unique("not-the-trainers"))).info.run_id
    os.environ.update(platform.env("trainer"))
    trainer = MlflowClient(tracking_uri=platform.tracking_uri)
    mine = trainer.create_run(trainer.get_experiment_by_name(TRAINING_EXPERIMENT).experiment_id)
    mine = mine.info.run_id
    user = platform.users["trainer"]
    api = f"{platform.tracking_uri}/api/2.0/mlflow/runs"
    metric = {"key": "loss", "value": 1.0, "timestamp": 0, "step": 0}
    writes = {
        "log-batch": {"metrics": [metric]},
        "log-metric": metric,
        "log-parameter": {"key": "p", "value": "1"},
        "set-tag": {"key": "t", "value": "1"},
    }

    def post(path, ids) -> int:
        return requests.post(f"{api}/{path}", json=ids | writes[path], timeout=30,
                             auth=(user.username, user.password),
                             verify=str(platform.ca_cert)).status_code  # fmt: skip

    for path in writes:
        assert post(path, {"run_uuid": mine, "runId": theirs}) == 400, path
        assert post(path, {"run_id": theirs}) == 403, path  # as the trainer may not
        assert post(path, {"run_id": mine}) == 200, path
    os.environ.update(platform.env())  # the client reads its credentials at each request
    data = admin.get_run(theirs).data
    assert not data.metrics and not data.params and "t" not in data.tags


def test_training_registers_a_model_whose_files_land_in_the_bucket(platform, months):
    name = unique("s3")
    result = train_cli(platform.env(), months, "--model", "linear", "--model-name", name)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{name} v1 @champion" in result.stdout
    version = client_for(platform).get_model_version_by_alias(name, "champion")
    model_id = version.source.rsplit("/", 1)[-1]
    keys = [
        o["Key"]
        for o in c.s3_client(platform.s3_endpoint)
        .list_objects_v2(Bucket=platform.bucket, Prefix="mlflow/")
        .get("Contents", [])
    ]
    model_files = [k for k in keys if f"/models/{model_id}/artifacts/" in k]
    assert any(k.endswith("/MLmodel") for k in model_files), keys[:20]
    assert any(k.endswith("/training/features.py") for k in model_files)


def test_worse_model_does_not_become_champion_and_a_better_one_does(platform, months):
    name = unique("gate")
    result = train_cli(
        platform.env(), months, "--model", "linear", "lightgbm", "linear", "--model-name", name
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()[-3:]
    assert lines[0].endswith(f"{name} v1 @champion")
    assert lines[1].endswith(f"{name} v2 @champion")
    assert lines[2].endswith(f"{name} v3 @challenger")
    aliases = client_for(platform).get_registered_model(name).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "2", "challenger": "3"}


def test_training_cli_with_bad_credentials_exits_with_one_line(platform, months):
    env = {**platform.env(), "MLFLOW_TRACKING_PASSWORD": "wrong"}
    result = train_cli(env, months, "--model", "linear")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "refused user 'admin' (HTTP 401)" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_serves_the_champion_and_picks_up_a_new_one(platform, months, tmp_path):
    name = unique("api")
    assert (
        train_cli(platform.env(), months, "--model", "linear", "--model-name", name).returncode == 0
    )
    env = {**platform.env(), "MODEL_API_MODEL_NAME": name, "MODEL_API_REFRESH_SECONDS": "1"}
    api = c.model_api_start(c.free_port(), tmp_path / "api.log", env)
    try:
        c.wait_until(api, c.http_ok(f"{api.url}/ready"), 120, "ready")
        first = requests.post(f"{api.url}/predict", json=RIDE, timeout=10).json()
        assert first["model_version"] == "1"

        assert (
            train_cli(
                platform.env(), months, "--model", "lightgbm", "--model-name", name
            ).returncode
            == 0
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            body = requests.post(f"{api.url}/predict", json=RIDE, timeout=10).json()
            if body["model_version"] == "2":
                break
            assert body["model_version"] == "1"  # never anything in between
            time.sleep(0.5)
        assert body["model_version"] == "2"
        assert body["duration"] != first["duration"]
    finally:
        api.stop()


def test_api_starts_while_the_registry_is_down_and_says_why(tmp_path):
    dead = f"http://127.0.0.1:{c.free_port()}"
    env = {
        "MLFLOW_TRACKING_URI": dead,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": "x",
        "MODEL_API_RETRY_SECONDS": "1",
    }
    api = c.model_api_start(c.free_port(), tmp_path / "api.log", env)
    try:
        assert requests.get(f"{api.url}/health", timeout=5).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = requests.get(f"{api.url}/ready", timeout=5)
            if "first attempt" not in ready.json()["reason"]:
                break
            time.sleep(0.5)
        assert ready.status_code == 503
        assert "cannot load models:/nyc-taxi-duration@champion" in ready.json()["reason"]
        assert ready.json()["reason_code"] == "registry_unreachable"
        assert requests.post(f"{api.url}/predict", json=RIDE, timeout=5).status_code == 503
        assert api.popen.poll() is None
    finally:
        api.stop()


def test_api_recovers_when_the_registry_comes_up(platform, months, tmp_path):
    """Started before any champion exists, it keeps retrying and serves once one does."""
    name = unique("late")
    env = {**platform.env(), "MODEL_API_MODEL_NAME": name, "MODEL_API_RETRY_SECONDS": "1"}
    api = c.model_api_start(c.free_port(), tmp_path / "api.log", env)
    try:
        assert requests.get(f"{api.url}/ready", timeout=5).status_code == 503
        assert (
            train_cli(platform.env(), months, "--model", "linear", "--model-name", name).returncode
            == 0
        )
        c.wait_until(api, c.http_ok(f"{api.url}/ready"), 120, "ready")
        assert (
            requests.post(f"{api.url}/predict", json=RIDE, timeout=10).json()["model_version"]
            == "1"
        )
    finally:
        api.stop()

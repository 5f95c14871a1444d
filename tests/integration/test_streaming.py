"""Streaming predictions for real: moto_server's Kinesis and SQS, the MLflow server with auth, a
champion trained by the training CLI, the consumer (`python -m streaming.consumer`, Lambda's event
source mapping locally) as the `streaming` user, and the model API beside it for comparison."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import uuid

import pyarrow.parquet as pq
import pytest
import requests

import local_platform as c
from streaming import kinesis
from streaming.handler import Handler, Record
from trip_model.serving import ModelHolder, RegistrySettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def champion_platform(platform, months):
    """The session's platform with a champion of nyc-taxi-duration, trained by the CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "training", "--train", str(months.train), "--val",
         str(months.val), "--model", "linear"],
        env={**os.environ, **platform.env("trainer")}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return platform


def streams(platform) -> c.Streams:
    suffix = uuid.uuid4().hex[:8]
    return c.ensure_streams(
        platform.s3_endpoint, f"events-{suffix}", f"predictions-{suffix}", f"dead-{suffix}"
    )


def put(found: c.Streams, datas: list[bytes]) -> None:
    client = c.aws_client("kinesis", found.endpoint)
    for start in range(0, len(datas), 500):
        chunk = datas[start : start + 500]
        answer = client.put_records(
            StreamName=found.events,
            Records=[{"Data": d, "PartitionKey": str(i)} for i, d in enumerate(chunk)],
        )
        assert answer["FailedRecordCount"] == 0


def predictions(found: c.Streams, n: int, timeout: float = 90) -> list[dict]:
    """Every record on the output stream, once at least n are there (and a moment more, to see
    a duplicate)."""
    client = c.aws_client("kinesis", found.endpoint)
    [shard] = client.list_shards(StreamName=found.predictions)["Shards"]
    iterator = client.get_shard_iterator(
        StreamName=found.predictions, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got: list[dict] = []
    deadline, settle = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        answer = client.get_records(ShardIterator=iterator, Limit=1000)
        iterator = answer["NextShardIterator"]
        got += [json.loads(r["Data"]) for r in answer["Records"]]
        if len(got) >= n:
            settle = settle or time.monotonic() + 1.0
            if time.monotonic() > settle:
                return got
        time.sleep(0.1)
    raise AssertionError(f"{len(got)} of {n} predictions in {timeout}s")


def dead_letters(found: c.Streams, n: int, timeout: float = 30) -> list[dict]:
    sqs = c.aws_client("sqs", found.endpoint)
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=found.dead_letter, MaxNumberOfMessages=10,
                                     WaitTimeSeconds=1)  # fmt: skip
        got += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
    return got


def ride(i: int) -> dict:
    return {"PULocationID": 1 + (i * 37) % 265, "DOLocationID": 1 + (i * 91) % 265,
            "trip_distance": round(0.3 + (i * 1.7) % 25, 2)}  # fmt: skip


@pytest.fixture(scope="module")
def live(champion_platform, tmp_path_factory):
    """Fresh streams with the consumer on them (as the `streaming` user, logging predictions),
    and the model API (as `model-api`) on the same registry."""
    platform = champion_platform
    logs = tmp_path_factory.mktemp("streaming")
    found = streams(platform)
    consumer = c.stream_consumer_start(
        found, logs / "consumer.log",
        {**platform.env("streaming"), "STREAMING_PREDICTION_LOG": f"s3://{platform.bucket}/"
         f"stream-log-{found.events}/"},
    )  # fmt: skip
    api = c.model_api_start(c.free_port(), logs / "api.log", platform.env("model-api"))
    try:
        c.wait_until(api, c.http_ok(f"{api.url}/ready"), 120, "ready with a model")
        yield platform, found, api
    finally:
        consumer.stop(timeout=10)
        api.stop(timeout=10)


def test_rides_in_predictions_out_equal_to_the_api_s_and_bad_records_dead_lettered(live):
    platform, found, api = live
    n = 60
    events = [json.dumps({"ride_id": f"ride-{i}", "ride": ride(i)}).encode() for i in range(n)]
    bad = [b"{not json", json.dumps({"ride_id": "bad-zone", "ride": {**ride(0),
           "PULocationID": 0}}).encode(), json.dumps({"ride": ride(1)}).encode()]  # fmt: skip
    put(found, events[:30] + bad + events[30:])
    out = predictions(found, n)
    by_id = {p["ride_id"]: p for p in out}
    assert len(out) == n and sorted(by_id) == sorted(f"ride-{i}" for i in range(n))
    for i in range(n):
        answer = requests.post(f"{api.url}/predict", json=ride(i), timeout=10).json()
        assert by_id[f"ride-{i}"]["duration"] == answer["duration"]
        assert by_id[f"ride-{i}"]["model_version"] == answer["model_version"]
    letters = dead_letters(found, 3)
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 3
    assert any(r.startswith("record: Invalid JSON") for r in reasons)
    assert "ride.PULocationID: Input should be greater than or equal to 1" in " ".join(reasons)
    assert "ride_id: Field required (missing)" in reasons
    assert {letter["source"]["stream"].rsplit("/", 1)[1] for letter in letters} == {found.events}
    # The same prediction log as the API's: each delivered prediction, by its ride_id.
    s3 = c.s3_client(platform.s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(
        Bucket=platform.bucket, Prefix=f"stream-log-{found.events}/").get("Contents", [])]  # fmt: skip
    assert keys and all("/date=" in k and k.endswith(".parquet") for k in keys)
    logged = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=platform.bucket, Key=k)["Body"].read()))
        for k in keys
    ]
    rows = {r["request_id"]: r for t in logged for r in t.to_pylist()}
    assert set(rows) == set(by_id)
    assert all(rows[i]["predicted_duration"] == by_id[i]["duration"] for i in rows)


def test_the_stream_command_puts_a_ride_and_reads_its_prediction(live, capsys, monkeypatch):
    from scripts import stream

    platform, found, api = live
    for key, value in c.FAKE_AWS.items():
        monkeypatch.setenv(key, value)
    where = ["--events", found.events, "--predictions", found.predictions,
             "--endpoint-url", found.endpoint]  # fmt: skip
    event = {"ride_id": "cli-1", "ride": ride(7)}
    assert stream.main([*where, "put", json.dumps(event)]) == 0
    assert stream.main([*where, "read", "--ride-id", "cli-1", "--wait", "30"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = requests.post(f"{api.url}/predict", json=ride(7), timeout=10).json()
    assert printed == {"ride_id": "cli-1", **expected}
    assert stream.main([*where, "read", "--ride-id", "never-put", "--wait", "0.5"]) == 1
    assert "no prediction for never-put" in capsys.readouterr().err


def test_the_smoke_test_s_stream_check_round_trips_a_ride(live, monkeypatch):
    from scripts import smoke

    platform, found, api = live
    for key, value in c.FAKE_AWS.items():
        monkeypatch.setenv(key, value)
    spec = {"events": found.events, "predictions": found.predictions, "endpoint": found.endpoint}
    prediction = smoke.kinesis_round_trip(spec, {"ride_id": "smoke-1", "ride": ride(3)}, 30)
    expected = requests.post(f"{api.url}/predict", json=ride(3), timeout=10).json()
    assert prediction == {"ride_id": "smoke-1", **expected}


class Throttled:
    """Kinesis as it answers a throttled PutRecords: the first request takes every other record
    and refuses the rest with ProvisionedThroughputExceededException."""

    def __init__(self, client) -> None:
        self.client, self.calls = client, 0

    def put_records(self, Records, **target):  # noqa: N803 - boto3's names
        self.calls += 1
        if self.calls > 1:
            return self.client.put_records(Records=Records, **target)
        answer = self.client.put_records(Records=Records[::2], **target)
        taken = iter(answer["Records"])
        refused = {"ErrorCode": "ProvisionedThroughputExceededException",
                   "ErrorMessage": "Rate exceeded for shard"}  # fmt: skip
        results = [next(taken) if i % 2 == 0 else refused for i in range(len(Records))]
        return {"FailedRecordCount": len(Records) // 2, "Records": results}


def test_a_throttled_output_is_retried_without_loss_or_duplicates(champion_platform, monkeypatch):
    platform = champion_platform
    for key, value in platform.env("streaming").items():
        monkeypatch.setenv(key, value)
    holder = ModelHolder(RegistrySettings(registry_timeout_seconds=5))
    assert holder.refresh(), holder.error
    found = streams(platform)
    client = Throttled(c.aws_client("kinesis", found.endpoint))
    handler = Handler(
        holder,
        kinesis.KinesisOutput(client, found.predictions),
        kinesis.SqsDeadLetter(c.aws_client("sqs", found.endpoint), found.dead_letter),
        backoff_seconds=0.01,
    )
    batch = [
        Record(str(i), json.dumps({"ride_id": f"t-{i}", "ride": ride(i)}).encode())
        for i in range(101)
    ]
    outcome = handler.handle(batch)
    assert client.calls == 2 and outcome.retry == [] and outcome.predicted == 101
    out = predictions(found, 101)
    assert sorted(p["ride_id"] for p in out) == sorted(f"t-{i}" for i in range(101))


class RuntimeApi:
    """Lambda's Runtime API, as much as a function's runtime client uses: one invocation with
    `event`, its answer kept (or its error)."""

    def __init__(self, event: dict) -> None:
        import http.server
        import threading

        self.answer: dict | None = None
        self.done = threading.Event()
        api = self
        served = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if served.is_set():  # one invocation only: the next waits until the test ends
                    api.done.wait(120)
                served.set()
                body = json.dumps(event).encode()
                self.send_response(200)
                for key, value in (("Lambda-Runtime-Aws-Request-Id", "req-1"),
                                   ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 120_000)),
                                   ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:streaming"),
                                   ("Lambda-Runtime-Trace-Id", "Root=1-0-0"),
                                   ("Content-Type", "application/json"),
                                   ("Content-Length", str(len(body)))):  # fmt: skip
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                api.answer = {
                    "path": self.path,
                    "body": json.loads(self.rfile.read(length) or b"null"),
                }
                self.send_response(202)
                self.end_headers()
                api.done.set()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()


def test_the_image_s_command_answers_a_lambda_kinesis_batch(champion_platform, tmp_path):
    """`python -m awslambdaric streaming.aws_lambda.handler`, the streaming image's command, as
    Lambda runs it: the password read from its secret (Secrets Manager on moto), a batch in, the
    predictions on the output stream, batchItemFailures out."""
    platform = champion_platform
    found = streams(platform)
    env = {**platform.env("streaming"), **c.FAKE_AWS, "AWS_ENDPOINT_URL": found.endpoint}
    password = env.pop("MLFLOW_TRACKING_PASSWORD")
    secret = c.aws_client("secretsmanager", found.endpoint).create_secret(
        Name=f"streaming-{uuid.uuid4().hex[:8]}", SecretString=password
    )["ARN"]
    records = [
        {"kinesis": {"partitionKey": f"l-{i}", "sequenceNumber": str(100 + i),
                     "data": base64.b64encode(json.dumps({"ride_id": f"l-{i}", "ride": ride(i)})
                                              .encode()).decode()},
         "eventID": f"shardId-000000000000:{100 + i}",
         "eventSourceARN": f"arn:aws:kinesis:us-east-1:123456789012:stream/{found.events}"}
        for i in range(5)
    ]  # fmt: skip
    api = RuntimeApi({"Records": records})
    env |= {
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "STREAMING_OUTPUT": found.predictions,
        "STREAMING_DEAD_LETTER": found.dead_letter,
        "STREAMING_PASSWORD_SECRET": secret,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "streaming.aws_lambda.handler"],
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_PASSWORD"} | env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert api.done.wait(120), "no answer from the function"
    finally:
        api.close()
        proc.kill()
        output = proc.communicate(timeout=10)[0]
    assert api.answer["path"] == "/2018-06-01/runtime/invocation/req-1/response", output[-2000:]
    assert api.answer["body"] == {"batchItemFailures": []}
    out = predictions(found, 5)
    assert sorted(p["ride_id"] for p in out) == [f"l-{i}" for i in range(5)]

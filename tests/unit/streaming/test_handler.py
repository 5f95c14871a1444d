"""The stream handler's core: predictions out in the batch's order, bad records to the dead
letters with their reasons, the output's refusals put again (only those), what is still not
delivered retried by the source, and the prediction log fed what was delivered."""

from __future__ import annotations

import base64
import json

import pytest

from streaming import kinesis
from streaming.handler import Handler, NoModel, Record
from trip_model.prediction_log import PredictionLog
from trip_model.serving import Loaded


class Holder:
    uri = "models:/stub@champion"
    error = None

    def __init__(self, loaded: Loaded | None = None) -> None:
        self.current = loaded or Loaded("7", 0.0, lambda pu, do, d: d * 2.0 + pu * 0.0, "stub")


class Output:
    """Takes records; `refuse` lists, per call, the indexes it refuses (a throttle)."""

    max_records = 3

    def __init__(self, refuse: list[list[int]] | None = None) -> None:
        self.refuse = list(refuse or [])
        self.taken: list[tuple[str, bytes]] = []
        self.calls: list[int] = []

    def put(self, records):
        self.calls.append(len(records))
        refused = self.refuse.pop(0) if self.refuse else []
        self.taken += [r for i, r in enumerate(records) if i not in refused]
        return refused


class Letters:
    def __init__(self, fail: bool = False) -> None:
        self.kept: list[dict] = []
        self.fail = fail

    def send(self, letters):
        if self.fail:
            raise ConnectionError("queue unreachable")
        self.kept += letters
        return []


def event(ride_id: str, pu=43, do=151, distance=1.8) -> bytes:
    ride = {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance}
    return json.dumps({"ride_id": ride_id, "ride": ride}).encode()


def records(*datas: bytes) -> list[Record]:
    return [Record(str(100 + i), d) for i, d in enumerate(datas)]


def handler(output=None, letters=None, log=None, holder=None) -> Handler:
    return Handler(holder or Holder(), output or Output(), letters or Letters(), log,
                   put_attempts=4, backoff_seconds=0.01, sleep=lambda s: None)  # fmt: skip


def taken(output: Output) -> list[dict]:
    return [json.loads(data) for _, data in output.taken]


def test_valid_rides_are_predicted_in_order_and_bad_records_get_a_reason():
    output, letters = Output(), Letters()
    batch = records(
        event("a", distance=1.0),
        b"not json",
        event("b", pu=999),
        json.dumps({"ride_id": "c"}).encode(),
        event("d", distance=3.5),
        json.dumps({"ride_id": "x" * 300, "ride": {}}).encode(),
    )
    outcome = handler(output, letters).handle(batch)
    assert taken(output) == [
        {"ride_id": "a", "duration": 2.0, "model_version": "7"},
        {"ride_id": "d", "duration": 7.0, "model_version": "7"},
    ]
    assert [k for k, _ in output.taken] == ["a", "d"]  # partitioned by ride
    assert (outcome.predicted, outcome.rejected, outcome.retry) == (2, 4, [])
    reasons = {letter["id"]: letter["reason"] for letter in letters.kept}
    assert reasons["101"].startswith("record: Invalid JSON") and "(json_invalid" in reasons["101"]
    assert reasons["102"].startswith("ride.PULocationID: Input should be less than or equal to 265")
    assert "input 999" in reasons["102"]
    assert reasons["103"] == "ride: Field required (missing)"
    # A long value is echoed cut, an object not at all.
    assert '"' + "x" * 64 + '..."' in reasons["105"] and "ride.PULocationID" in reasons["105"]
    [bad] = [letter for letter in letters.kept if letter["id"] == "101"]
    assert base64.b64decode(bad["data_base64"]) == b"not json" and bad["truncated"] is False
    assert bad["errors"][0]["field"] == "record"


def test_a_throttled_put_is_retried_for_the_refused_records_only():
    # Chunks of 3: the first call refuses 0 and 2, the second 1; the retry puts [0, 2, 4].
    output = Output(refuse=[[0, 2], [1], []])
    outcome = handler(output).handle(records(*(event(f"r{i}") for i in range(5))))
    ids = [p["ride_id"] for p in taken(output)]
    assert sorted(ids) == [f"r{i}" for i in range(5)]  # every one once: no loss, no duplicate
    assert output.calls == [3, 2, 3]
    assert outcome.retry == [] and outcome.predicted == 5 and outcome.put_attempts == 3


def test_records_the_output_never_takes_are_retried_by_the_source_and_not_logged(tmp_path):
    output = Output(refuse=[[1], [0], [0], [0]])
    log = PredictionLog(str(tmp_path))
    outcome = handler(output, log=log).handle(records(event("a"), event("b"), event("c")))
    assert outcome.retry == ["101"] and outcome.predicted == 2
    assert [p["ride_id"] for p in taken(output)] == ["a", "c"]
    assert log.flush() == 2
    import pyarrow.parquet as pq

    logged = pq.read_table(sorted(tmp_path.rglob("*.parquet"))).to_pandas()
    assert logged["request_id"].tolist() == ["a", "c"]
    assert logged["predicted_duration"].tolist() == [3.6, 3.6]
    assert set(logged["model_version"]) == {"7"}


def test_an_output_that_raises_is_retried_then_left_to_the_source():
    class Down(Output):
        def put(self, records):
            raise ConnectionError("endpoint unreachable")

    outcome = handler(Down()).handle(records(event("a"), b"{}"))
    assert outcome.retry == ["100"] and outcome.predicted == 0 and outcome.rejected == 1


def test_a_dead_letter_not_kept_is_retried_by_the_source():
    outcome = handler(letters=Letters(fail=True)).handle(records(event("a"), b"[]"))
    assert outcome.retry == ["101"] and outcome.predicted == 1 and outcome.rejected == 0


def test_no_model_raises_so_the_source_delivers_the_batch_again():
    holder = Holder()
    holder.current, holder.error = None, "cannot load models:/x@champion: no version"
    with pytest.raises(NoModel, match="no version"):
        handler(holder=holder).handle(records(event("a")))


def test_lambda_s_kinesis_event_in_and_batch_item_failures_out():
    data = event("a")
    lambda_event = {"Records": [{
        "kinesis": {"partitionKey": "a", "sequenceNumber": "4955", "kinesisSchemaVersion": "1.0",
                    "data": base64.b64encode(data).decode()},
        "eventID": "shardId-000000000003:4955", "eventSourceARN": "arn:aws:kinesis:r:1:stream/in",
    }]}  # fmt: skip
    [record] = kinesis.records(lambda_event)
    assert record.id == "4955" and record.data == data
    assert record.source["shard"] == "shardId-000000000003"
    outcome = handler(Output(refuse=[[0]] * 4)).handle([record])
    assert kinesis.response(outcome) == {"batchItemFailures": [{"itemIdentifier": "4955"}]}


def test_kinesis_output_finds_the_refused_records_by_their_error_code():
    class Client:
        def put_records(self, Records, **target):  # noqa: N803 - boto3's names
            self.target = target
            return {"FailedRecordCount": 1, "Records": [
                {"SequenceNumber": "1"}, {"ErrorCode": "ProvisionedThroughputExceededException"},
            ]}  # fmt: skip

    client = Client()
    assert kinesis.KinesisOutput(client, "out").put([("a", b"1"), ("b", b"2")]) == [1]
    assert client.target == {"StreamName": "out"}
    arn = "arn:aws:kinesis:us-east-1:1:stream/out"
    kinesis.KinesisOutput(client, arn).put([("a", b"1")])
    assert client.target == {"StreamARN": arn}

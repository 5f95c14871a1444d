"""Kinesis on both ends, as AWS Lambda's event source mapping delivers it: the Lambda event's
records as `Record`s, the batch's answer (`batchItemFailures`), the output stream (PutRecords,
the records it refused found by their ErrorCode) and the SQS dead-letter queue. The local
consumer (streaming.consumer) builds the same event from moto's Kinesis."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from typing import Any

from streaming.handler import Outcome, Record

log = logging.getLogger(__name__)
PUT_RECORDS_MAX = 500  # Kinesis PutRecords: at most 500 records (and 5 MiB) per request


def records(event: dict[str, Any]) -> list[Record]:
    """A Lambda Kinesis event's records, in order; each is retried by its sequence number."""
    found = []
    for item in event.get("Records", ()):
        kinesis = item["kinesis"]
        found.append(
            Record(
                id=kinesis["sequenceNumber"],
                data=base64.b64decode(kinesis["data"]),
                source={
                    "stream": item.get("eventSourceARN", ""),
                    "shard": item.get("eventID", "").split(":", 1)[0],
                    "partition_key": kinesis.get("partitionKey", ""),
                    "sequence_number": kinesis["sequenceNumber"],
                },
            )
        )
    return found


def response(outcome: Outcome) -> dict[str, list[dict[str, str]]]:
    """The answer Lambda reads with ReportBatchItemFailures: the records to deliver again (it
    restarts from the lowest sequence number among them)."""
    return {"batchItemFailures": [{"itemIdentifier": i} for i in outcome.retry]}


class KinesisOutput:
    max_records = PUT_RECORDS_MAX

    def __init__(self, client, stream: str) -> None:
        self.client = client
        self.stream = {"StreamARN" if stream.startswith("arn:") else "StreamName": stream}

    def put(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        answer = self.client.put_records(
            Records=[{"Data": data, "PartitionKey": key} for key, data in batch], **self.stream
        )
        if not answer.get("FailedRecordCount"):
            return []
        return [i for i, r in enumerate(answer["Records"]) if r.get("ErrorCode")]


class SqsDeadLetter:
    """Each dead letter an SQS message of its own (a letter may carry 64 KiB of its record)."""

    def __init__(self, client, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def send(self, letters: Sequence[dict[str, Any]]) -> list[int]:
        failed = []
        for i, letter in enumerate(letters):
            try:
                self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(letter))
            except Exception as exc:  # the source delivers its record again
                log.warning("dead letter %s not sent: %s", letter.get("id"), exc)
                failed.append(i)
        return failed


def round_trip(
    client, events: str, predictions: str, event: dict[str, Any], timeout: float,
    poll_seconds: float = 0.01,
) -> tuple[dict[str, Any] | None, float]:  # fmt: skip
    """Put one ride event on the input stream and wait for its prediction on the output stream
    (read from now on): the prediction, or None after `timeout`; and the seconds from the put."""
    import time

    iterators = [
        client.get_shard_iterator(StreamName=predictions, ShardId=shard["ShardId"],
                                  ShardIteratorType="LATEST")["ShardIterator"]
        for shard in client.list_shards(StreamName=predictions)["Shards"]
    ]  # fmt: skip
    started = time.perf_counter()
    client.put_record(StreamName=events, Data=json.dumps(event).encode(),
                      PartitionKey=str(event.get("ride_id")))  # fmt: skip
    while time.perf_counter() - started < timeout:
        for i, iterator in enumerate(iterators):
            answer = client.get_records(ShardIterator=iterator, Limit=1000)
            iterators[i] = answer["NextShardIterator"]
            for record in answer["Records"]:
                prediction = json.loads(record["Data"])
                if prediction.get("ride_id") == event.get("ride_id"):
                    return prediction, time.perf_counter() - started
        time.sleep(poll_seconds)
    return None, time.perf_counter() - started

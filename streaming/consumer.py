"""The local stream consumer: `python -m streaming.consumer --stream NAME`, what Lambda's event
source mapping does on AWS, on any Kinesis endpoint (moto's, locally: AWS_ENDPOINT_URL).

One thread per shard reads the input stream with GetRecords from the time the consumer started
(what arrives after it), hands each batch to the handler in Lambda's event shape
(streaming.kinesis), and reads the batch again from the lowest sequence number the handler reports
(`batchItemFailures`), as Lambda does, after a backoff. No model yet: the batch waits and is read
again. Settings: STREAMING_* (streaming.settings), MLflow's MLFLOW_*."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import logging
import signal
import sys
import threading
from typing import Any

from streaming import kinesis, service
from streaming.handler import Handler, NoModel

log = logging.getLogger("streaming.consumer")
MAX_BACKOFF_SECONDS = 5.0


def lambda_event(records: list[dict[str, Any]], stream_arn: str, shard: str, region: str) -> dict:
    """GetRecords' records as Lambda's Kinesis event carries them."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


class ShardReader:
    def __init__(self, client, handler: Handler, stream: str, shard: str, batch_size: int,
                 poll_seconds: float, since: dt.datetime, stop: threading.Event) -> None:  # fmt: skip
        self.client, self.handler, self.stream, self.shard = client, handler, stream, shard
        self.batch_size, self.poll_seconds, self.stop = batch_size, poll_seconds, stop
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        self.arn = summary["StreamARN"]
        self.region = client.meta.region_name
        self.since = since
        self.done: str | None = None  # the last sequence number handled
        self.iterator = self.resume()
        self.failures = 0

    def resume(self) -> str:
        """An iterator after the last record handled (from `since` before the first)."""
        if self.done is None:
            return self.client.get_shard_iterator(
                StreamName=self.stream, ShardId=self.shard, ShardIteratorType="AT_TIMESTAMP",
                Timestamp=self.since,
            )["ShardIterator"]  # fmt: skip
        return self.client.get_shard_iterator(
            StreamName=self.stream, ShardId=self.shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=self.done,
        )["ShardIterator"]  # fmt: skip

    def at(self, sequence_number: str) -> str:
        return self.client.get_shard_iterator(
            StreamName=self.stream, ShardId=self.shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=sequence_number,
        )["ShardIterator"]  # fmt: skip

    def backoff(self) -> None:
        self.failures += 1
        self.stop.wait(min(MAX_BACKOFF_SECONDS, 0.2 * 2 ** (self.failures - 1)))

    def step(self) -> None:
        """One GetRecords and its batch: handled, or read again from where it failed."""
        answer = self.client.get_records(ShardIterator=self.iterator, Limit=self.batch_size)
        records = answer["Records"]
        if not records:
            self.iterator = answer["NextShardIterator"]
            self.stop.wait(self.poll_seconds)
            return
        event = lambda_event(records, self.arn, self.shard, self.region)
        try:
            outcome = self.handler.handle(kinesis.records(event))
        except NoModel as exc:
            log.warning("%s: no model yet, the batch waits (%s)", self.shard, exc)
            self.iterator = self.at(records[0]["SequenceNumber"])
            self.backoff()
            return
        if self.handler.prediction_log is not None:
            self.handler.prediction_log.flush()
        if outcome.retry:
            lowest = min(outcome.retry, key=int)
            log.warning("%s: %d records to retry, from %s", self.shard, len(outcome.retry), lowest)
            self.iterator = self.at(lowest)
            self.backoff()
            return
        self.failures = 0
        self.done = records[-1]["SequenceNumber"]
        log.info("%s: %d predicted, %d dead letters", self.shard, outcome.predicted,
                 outcome.rejected)  # fmt: skip
        self.iterator = answer["NextShardIterator"]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the endpoint went away, an iterator expired: read again
                log.warning("%s: %s", self.shard, exc)
                self.backoff()
                try:
                    self.iterator = self.resume()
                except Exception as again:
                    log.warning("%s: %s", self.shard, again)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streaming.consumer",
        description="Read a Kinesis stream of ride events and put their predictions on the "
        "output stream (STREAMING_OUTPUT), as the Lambda function does on AWS.",
    )
    parser.add_argument("--stream", required=True, help="the input stream's name")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        choices=range(1, 10_001),
        metavar="1-10000",
        help="records per batch at most (default 100)",
    )
    parser.add_argument("--poll-seconds", type=float, default=0.1,
                        help="wait between reads of an idle shard (default 0.1)")  # fmt: skip
    args = parser.parse_args(argv)
    settings = service.settings_at_start()
    if settings is None:
        return 2
    import boto3

    client = boto3.client("kinesis")
    handler = service.handler(
        settings,
        kinesis.KinesisOutput(client, settings.output),
        kinesis.SqsDeadLetter(boto3.client("sqs"), settings.dead_letter),
    )
    handler.holder.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    since = dt.datetime.now(dt.UTC)
    try:
        shards = client.list_shards(StreamName=args.stream)["Shards"]
    except Exception as exc:
        print(f"error: --stream {args.stream}: {exc}", file=sys.stderr)
        return 2
    readers = [
        ShardReader(client, handler, args.stream, s["ShardId"], args.batch_size,
                    args.poll_seconds, since, stop)
        for s in shards
    ]  # fmt: skip
    threads = [threading.Thread(target=r.run, name=r.shard, daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    log.info("reading %s (%d shards) from %s", args.stream, len(shards), since.isoformat())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        stop.set()
    for thread in threads:
        thread.join(timeout=10)
    handler.holder.stop()
    if handler.prediction_log is not None:
        handler.prediction_log.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The stream handler, locally: the input and output Kinesis streams and the dead-letter queue on
moto_server, and the consumer (`python -m streaming.consumer`, what Lambda's event source mapping
does on AWS) reading the input stream."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from local_platform.processes import Proc, spawn, wait_until
from local_platform.stores import FAKE_AWS, aws_client


@dataclass(frozen=True)
class Streams:
    endpoint: str
    events: str
    """The input stream's name: ride events go here."""
    predictions: str
    """The output stream's name: their predictions come out here."""
    dead_letter: str
    """The SQS queue URL bad records go to, with their reasons."""


def ensure_streams(
    endpoint: str,
    events: str = "ride-events",
    predictions: str = "ride-predictions",
    dead_letter: str = "ride-events-dead-letter",
) -> Streams:
    """The two streams (one shard each) and the queue on moto_server, made if missing."""
    kinesis = aws_client("kinesis", endpoint)
    existing = set(kinesis.list_streams().get("StreamNames", []))
    for name in (events, predictions):
        if name not in existing:
            kinesis.create_stream(StreamName=name, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
    queue = aws_client("sqs", endpoint).create_queue(QueueName=dead_letter)["QueueUrl"]
    return Streams(endpoint, events, predictions, queue)


def stream_consumer_start(streams: Streams, log: Path, env: dict[str, str]) -> Proc:
    """The consumer on the input stream, putting predictions on the output stream; `env` gives
    its MLflow user (and any STREAMING_* setting). Ready once it reads the stream: what is put
    from then on is predicted."""
    argv = [sys.executable, "-m", "streaming.consumer", "--stream", streams.events]
    env = {
        **FAKE_AWS,
        "AWS_ENDPOINT_URL": streams.endpoint,
        "STREAMING_OUTPUT": streams.predictions,
        "STREAMING_DEAD_LETTER": streams.dead_letter,
        **env,
    }
    proc = spawn("stream-consumer", argv, log, env)
    marker = f"reading {streams.events} "

    def reading() -> bool:
        return log.exists() and marker in log.read_text(errors="replace")

    wait_until(proc, reading, 60, "reading its stream")
    return proc


def round_trip(streams: Streams, event: dict, timeout: float = 30.0) -> tuple[dict | None, float]:
    """Put one ride event on the local input stream and wait for its prediction on the output
    stream: (the prediction or None, seconds from put to readable)."""
    from streaming import kinesis

    client = aws_client("kinesis", streams.endpoint)
    return kinesis.round_trip(client, streams.events, streams.predictions, event, timeout)

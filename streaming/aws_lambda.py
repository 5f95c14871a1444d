"""The AWS Lambda function: `streaming.aws_lambda.handler`, the streaming image's command under
the runtime interface client (awslambdaric), invoked by the event source mapping with a batch of
the input stream's records.

The first invocation of an instance loads the champion (Lambda freezes an instance between
invocations, so no thread refreshes it: each invocation refreshes when due) and every invocation
writes its predictions to the log before it returns. No model yet raises: Lambda delivers the
batch again (bounded by the mapping's retries, then its on-failure destination)."""

from __future__ import annotations

import logging
from typing import Any

from streaming import kinesis, service
from streaming.handler import Handler
from streaming.settings import load

log = logging.getLogger("streaming")
log.setLevel(logging.INFO)
_handler: Handler | None = None


def start() -> Handler:
    import boto3

    settings = load()
    output = kinesis.KinesisOutput(boto3.client("kinesis"), settings.output)
    dead_letters = kinesis.SqsDeadLetter(boto3.client("sqs"), settings.dead_letter)
    return service.handler(settings, output, dead_letters)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    global _handler
    if _handler is None:
        _handler = start()
    _handler.holder.refresh_if_due()
    outcome = _handler.handle(kinesis.records(event))
    if _handler.prediction_log is not None:
        _handler.prediction_log.flush()
    log.info(
        "batch: %d predicted, %d dead letters, %d to retry, %d output requests",
        outcome.predicted, outcome.rejected, len(outcome.retry), outcome.put_attempts,
    )  # fmt: skip
    return kinesis.response(outcome)

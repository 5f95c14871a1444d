"""Pub/Sub on both ends, as Cloud Run runs the handler behind a push subscription: the push
request's message as a `Record`, the answer (2xx acknowledges; anything else has Pub/Sub deliver
it again, and after the subscription's last attempt forward it to its dead-letter topic), and
topics for the predictions and the dead letters, published to over Pub/Sub's REST API (the
emulator's with PUBSUB_EMULATOR_HOST)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streaming.handler import Record

PUBLISH_MAX = 1000  # Pub/Sub: at most 1,000 messages (and 10 MB) per publish request
ATTRIBUTE_BYTES = 1024  # an attribute's value: at most 1,024 bytes
SCOPE = "https://www.googleapis.com/auth/pubsub"


class PushMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    data: str = ""
    message_id: str = Field(alias="messageId", min_length=1)
    attributes: dict[str, str] | None = None
    publish_time: str | None = Field(default=None, alias="publishTime")


class PushEnvelope(BaseModel):
    """A push request's body (the default, wrapped format)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message: PushMessage
    subscription: str = Field(min_length=1)
    delivery_attempt: int | None = Field(default=None, alias="deliveryAttempt")


def record(envelope: PushEnvelope) -> Record:
    message = envelope.message
    try:
        data = base64.b64decode(message.data, validate=True)
    except ValueError:
        data = message.data.encode()  # not base64: the dead letter says it is no ride event
    return Record(
        id=message.message_id,
        data=data,
        source={
            "subscription": envelope.subscription,
            "message_id": message.message_id,
            "publish_time": message.publish_time,
            "delivery_attempt": envelope.delivery_attempt,
        },
    )


class Topic:
    """A topic (projects/P/topics/T) published to by REST; as the handler's output (a
    prediction per message, its ride_id as an attribute) and as its dead letters (a letter per
    message, its reason as an attribute). A publish is whole or fails whole."""

    max_records = PUBLISH_MAX

    def __init__(self, topic: str, session=None) -> None:
        self.topic = topic
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        base = f"http://{emulator}" if emulator else "https://pubsub.googleapis.com"
        self.url = f"{base}/v1/{topic}:publish"
        if session is None:
            import requests

            session = requests.Session()
            if not emulator:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                session = AuthorizedSession(google.auth.default(scopes=[SCOPE])[0])
        self.session = session

    def publish(self, messages: list[dict[str, Any]]) -> None:
        answer = self.session.post(self.url, json={"messages": messages}, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"publish to {self.topic}: HTTP {answer.status_code} "
                               f"{answer.text[:300]}")  # fmt: skip

    def put(self, records: Sequence[tuple[str, bytes]]) -> list[int]:
        self.publish(
            [{"data": _b64(data), "attributes": {"ride_id": key}} for key, data in records]
        )
        return []

    def send(self, letters: Sequence[dict[str, Any]]) -> list[int]:
        self.publish([
            {"data": _b64(json.dumps(letter).encode()),
             "attributes": {"reason": letter["reason"].encode()[:ATTRIBUTE_BYTES]
                            .decode("utf-8", "ignore")}}
            for letter in letters
        ])  # fmt: skip
        return []


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

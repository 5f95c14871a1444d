"""The handler behind a Pub/Sub push subscription: a ride's prediction and a bad record's dead
letter published by REST and acknowledged; what is not published, or no model, is a 503 (Pub/Sub
delivers it again); a body that is no push request is a 400 naming the field."""

from __future__ import annotations

import base64
import json

from fastapi.testclient import TestClient

from streaming import pubsub
from streaming.handler import Handler
from streaming.push import create_app
from tests.unit.streaming.test_handler import Holder, event


class Session:
    """Pub/Sub's REST publish as seen by the client: what was posted where; `status` answers."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = status

    def post(self, url, json, timeout):  # noqa: A002 - requests' name
        self.posts.append((url, json))
        return type("Answer", (), {"status_code": self.status, "text": "quota exceeded"})()


class Loader(Holder):
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def app_with(out: Session, dead: Session, holder=None):
    handler = Handler(
        holder or Loader(),
        pubsub.Topic("projects/p/topics/ride-predictions", out),
        pubsub.Topic("projects/p/topics/ride-events-dead-letter", dead),
        put_attempts=2, backoff_seconds=0, sleep=lambda s: None,
    )  # fmt: skip
    return TestClient(create_app(handler))


def push(data: bytes, message_id: str = "m-1") -> dict:
    return {
        "message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                    "publishTime": "2026-12-06T10:00:00Z", "attributes": {}},
        "subscription": "projects/p/subscriptions/ride-events-push",
        "deliveryAttempt": 1,
    }  # fmt: skip


def published(session: Session) -> list[tuple[str, dict, dict]]:
    return [
        (url, json.loads(base64.b64decode(m["data"])), m["attributes"])
        for url, body in session.posts
        for m in body["messages"]
    ]


def test_a_ride_event_s_prediction_is_published_and_acknowledged():
    out, dead = Session(), Session()
    with app_with(out, dead) as client:
        answer = client.post("/pubsub/push", json=push(event("r-1", distance=2.0)))
    assert answer.status_code == 204
    [(url, body, attributes)] = published(out)
    assert url == "https://pubsub.googleapis.com/v1/projects/p/topics/ride-predictions:publish"
    assert body == {"ride_id": "r-1", "duration": 4.0, "model_version": "7"}
    assert attributes == {"ride_id": "r-1"} and dead.posts == []


def test_a_bad_record_goes_to_the_dead_letter_topic_with_its_reason_and_is_acknowledged():
    out, dead = Session(), Session()
    with app_with(out, dead) as client:
        answer = client.post("/pubsub/push", json=push(b'{"ride_id": "x"}', "m-9"))
    assert answer.status_code == 204 and out.posts == []
    [(url, letter, attributes)] = published(dead)
    assert url.endswith("/projects/p/topics/ride-events-dead-letter:publish")
    assert (
        attributes == {"reason": "ride: Field required (missing)"} == {"reason": letter["reason"]}
    )
    assert letter["source"]["subscription"] == "projects/p/subscriptions/ride-events-push"
    assert letter["id"] == "m-9"


def test_a_prediction_not_published_or_no_model_is_delivered_again():
    out = Session(status=429)
    with app_with(out, Session()) as client:
        answer = client.post("/pubsub/push", json=push(event("r-1")))
    assert answer.status_code == 503 and len(out.posts) == 2  # tried put_attempts times
    holder = Loader()
    holder.current, holder.error = None, "cannot load models:/x@champion: registry down"
    with app_with(Session(), Session(), holder) as client:
        answer = client.post("/pubsub/push", json=push(event("r-1")))
    assert answer.status_code == 503 and "registry down" in answer.json()["detail"]


def test_a_body_that_is_no_push_request_is_a_400_naming_the_field():
    with app_with(Session(), Session()) as client:
        answer = client.post("/pubsub/push", json={"message": {"data": ""}})
        assert client.get("/health").status_code == 200
    assert answer.status_code == 400
    fields = {e["field"] for e in answer.json()["detail"]}
    assert fields == {"message.messageId", "subscription"}


def test_the_emulator_is_reached_without_credentials(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    topic = pubsub.Topic("projects/p/topics/t")
    assert topic.url == "http://127.0.0.1:8085/v1/projects/p/topics/t:publish"

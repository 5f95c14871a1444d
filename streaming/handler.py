"""One batch of ride events in, their predictions out: the core every transport calls.

Each transport (a Lambda function on Kinesis, Cloud Run behind a Pub/Sub push subscription, the
local consumer on moto's Kinesis) turns what it received into `Record`s, calls `Handler.handle`,
and tells its source which records to deliver again (`Outcome.retry`):

- a record that is not a ride event (not JSON, an invalid ride: the model API's rules) goes to the
  dead-letter destination with its reason and never stops the batch;
- the valid rides are predicted at once by the served model (trip_model.serving: the registry's
  alias, the predictor the model API uses) and their predictions put on the output, the records it
  did not take (a throttle, a partial failure) put again with backoff, only those, up to
  `put_attempts` times: no prediction is put twice by one call;
- what is still not delivered (prediction or dead letter) is retried by the source; delivery is at
  least once, and a prediction carries its ride_id and model version to recognise a repeat;
- the predictions delivered go to the prediction log, as the model API's do (request_id = ride_id).

No model loaded yet raises NoModel: the transport has the whole batch delivered again.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from streaming import events
from trip_model.prediction_log import PredictionLog
from trip_model.serving import ModelHolder

log = logging.getLogger(__name__)
DEAD_LETTER_DATA_BYTES = 65_536
"""How much of a bad record a dead letter keeps (base64), enough to see and replay an event."""


@dataclass(frozen=True)
class Record:
    id: str
    """What the source retries by: a Kinesis sequence number, a Pub/Sub message id."""
    data: bytes
    source: dict[str, Any] = field(default_factory=dict)
    """Where it came from (stream, shard, partition key; subscription), for its dead letter."""


class Output(Protocol):
    max_records: int
    """Most records one `put` takes (Kinesis PutRecords: 500)."""

    def put(self, records: Sequence[tuple[str, bytes]]) -> list[int]:
        """Put (partition key, data) records; the indexes of those not taken (to put again)."""
        ...


class DeadLetter(Protocol):
    def send(self, letters: Sequence[dict[str, Any]]) -> list[int]:
        """Keep these dead letters; the indexes of those not kept."""
        ...


class NoModel(RuntimeError):
    """No model is loaded yet (the reason: the holder's error)."""


@dataclass
class Outcome:
    predicted: int = 0
    """Predictions delivered to the output."""
    rejected: int = 0
    """Bad records delivered to the dead-letter destination."""
    retry: list[str] = field(default_factory=list)
    """Ids of the records to deliver again, in the batch's order."""
    put_attempts: int = 0
    """Output requests made (more than one: some records were put again)."""


def dead_letter(record: Record, reason: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    data = record.data[:DEAD_LETTER_DATA_BYTES]
    return {
        "reason": reason,
        "errors": errors,
        "id": record.id,
        "source": record.source,
        "data_base64": base64.b64encode(data).decode(),
        "truncated": len(record.data) > DEAD_LETTER_DATA_BYTES,
    }


class Handler:
    def __init__(
        self,
        holder: ModelHolder,
        output: Output,
        dead_letters: DeadLetter,
        prediction_log: PredictionLog | None = None,
        put_attempts: int = 5,
        backoff_seconds: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.holder = holder
        self.output = output
        self.dead_letters = dead_letters
        self.prediction_log = prediction_log
        self.put_attempts = put_attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def handle(self, records: Sequence[Record]) -> Outcome:
        loaded = self.holder.current  # one read: the whole batch uses one model version
        if loaded is None:
            raise NoModel(self.holder.error or f"{self.holder.uri}: not loaded")
        rides: list[events.RideEvent] = []
        ride_records: list[Record] = []
        letters: list[dict[str, Any]] = []
        letter_records: list[Record] = []
        for record in records:
            parsed = events.parse(record.data)
            if isinstance(parsed, events.RideEvent):
                rides.append(parsed)
                ride_records.append(record)
            else:
                letters.append(dead_letter(record, *parsed))
                letter_records.append(record)
        outcome = Outcome()
        failed: set[str] = set()
        if rides:
            arrays = (
                np.fromiter((e.ride.PULocationID for e in rides), np.int64, len(rides)),
                np.fromiter((e.ride.DOLocationID for e in rides), np.int64, len(rides)),
                np.fromiter((e.ride.trip_distance for e in rides), np.float64, len(rides)),
            )
            durations = loaded.predict(*arrays)
            out = [
                (e.ride_id, events.prediction(e.ride_id, d, loaded.version))
                for e, d in zip(rides, durations.tolist(), strict=True)
            ]
            undelivered = self._put(out, outcome)
            failed.update(ride_records[i].id for i in undelivered)
            delivered = np.ones(len(rides), dtype=bool)
            delivered[list(undelivered)] = False
            outcome.predicted = int(delivered.sum())
            self._log(rides, arrays, durations, delivered, loaded.version)
        if letters:
            not_kept = self._send(letters)
            failed.update(letter_records[i].id for i in not_kept)
            outcome.rejected = len(letters) - len(not_kept)
            for letter in letters:
                log.warning("dead letter %s: %s", letter["id"], letter["reason"])
        outcome.retry = [r.id for r in records if r.id in failed]
        return outcome

    def _put(self, out: list[tuple[str, bytes]], outcome: Outcome) -> set[int]:
        """Put every prediction, the ones not taken again with backoff; those never taken."""
        size = self.output.max_records
        pending = list(range(len(out)))
        for attempt in range(self.put_attempts):
            if attempt:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            left: list[int] = []
            for start in range(0, len(pending), size):
                chunk = pending[start : start + size]
                outcome.put_attempts += 1
                try:
                    refused = self.output.put([out[i] for i in chunk])
                except Exception as exc:  # the whole request failed: all of it again
                    log.warning("output: %d predictions not put: %s", len(chunk), exc)
                    refused = list(range(len(chunk)))
                left += [chunk[i] for i in refused]
            pending = left
            if not pending:
                break
        if pending:
            log.warning(
                "output: %d predictions not put after %d attempts; their records are retried",
                len(pending), self.put_attempts,
            )  # fmt: skip
        return set(pending)

    def _send(self, letters: list[dict[str, Any]]) -> list[int]:
        try:
            return self.dead_letters.send(letters)
        except Exception as exc:  # none kept: the source delivers them again
            log.warning("dead letters: %d not kept: %s", len(letters), exc)
            return list(range(len(letters)))

    def _log(self, rides, arrays, durations, delivered: np.ndarray, version: str) -> None:
        if self.prediction_log is None:
            return
        for i in np.flatnonzero(delivered).tolist():
            one = tuple(a[i : i + 1] for a in arrays)
            self.prediction_log.record(rides[i].ride_id, version, one, durations[i : i + 1])

"""What the stream carries: a ride event in, a prediction out, and a bad record's reason.

A ride event is `{"ride_id": "...", "ride": {"PULocationID": 43, "DOLocationID": 151,
"trip_distance": 1.8}}`, the ride checked by the model API's own rules (trip_model.rides.Ride). A
record that is not one gets a reason of one line naming each field at fault, as the model API's
422 does (`ride.trip_distance: Input should be less than 200 (less_than)`), and its input only when
small, so a dead letter never reflects a long value whole.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from trip_model.rides import Ride

ECHO_CHARS = 64
# The model API's X-Request-ID rule: a plausible key, never a document.
RideId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$", strict=True)]


class RideEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ride_id: RideId
    ride: Ride


def prediction(ride_id: str, duration: float, version: str) -> bytes:
    """A prediction as the output stream carries it."""
    return json.dumps(
        {"ride_id": ride_id, "duration": duration, "model_version": version},
        separators=(",", ":"),
    ).encode()


def parse(data: bytes) -> RideEvent | tuple[str, list[dict[str, Any]]]:
    """The ride event in a record's bytes, or (the reason in one line, each field at fault)."""
    try:
        return RideEvent.model_validate_json(data)
    except ValidationError as exc:
        errors = [field_error(e) for e in exc.errors(include_url=False)]
    return "; ".join(_line(e) for e in errors), errors


def field_error(err: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as the model API gives it: field, type, msg and a small input."""
    item: dict[str, Any] = {
        "field": ".".join(str(p) for p in err.get("loc", ())) or "record",
        "type": err.get("type"),
        "msg": err.get("msg"),
    }
    value = err.get("input")
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)  # NaN/Infinity are not JSON
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        value = value[:ECHO_CHARS] + "..."
    if not isinstance(value, dict | list):
        item["input"] = value
    return item


def _line(error: dict[str, Any]) -> str:
    shown = f", input {json.dumps(error['input'])}" if "input" in error else ""
    return f"{error['field']}: {error['msg']} ({error['type']}{shown})"

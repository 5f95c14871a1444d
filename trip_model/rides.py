"""What a ride is, for every part that takes one: the model API's and the stream handler's
validation (Ride), the scoring job's and the monitor's reading of TLC months, the predictors'
check set."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# TLC taxi zones are numbered 1-263, plus 264/265 for "unknown" and "outside NYC".
MIN_ZONE, MAX_ZONE = 1, 265
# Longer than any plausible metered trip; larger values are data errors, not rides.
MAX_TRIP_DISTANCE = 200.0


def _whole_number(value: Any) -> Any:
    """A zone as the OpenAPI document says, a JSON integer: 117 and 117.0 (the same number in
    JSON), never "117", true or 117.5 (left to the strict int check, which names them)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Zone = Annotated[int, Field(strict=True, ge=MIN_ZONE, le=MAX_ZONE)]


class Ride(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}]
        },
    )

    PULocationID: Zone = Field(description="pickup TLC taxi zone (1-265)")
    DOLocationID: Zone = Field(description="dropoff TLC taxi zone (1-265)")
    _zones_as_json_integers = field_validator("PULocationID", "DOLocationID", mode="before")(
        staticmethod(_whole_number)
    )

    # strict: a JSON number only (an integer is one too), not "1.8", true or false.
    trip_distance: float = Field(
        strict=True,
        ge=0,
        lt=MAX_TRIP_DISTANCE,
        allow_inf_nan=False,
        description="trip distance in miles",
    )

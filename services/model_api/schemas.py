"""Request and response models; validation errors name the field at fault (HTTP 422)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trip_model.rides import MAX_TRIP_DISTANCE, MAX_ZONE, MIN_ZONE

MAX_BATCH = 1000


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


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rides: list[Ride] = Field(min_length=1, max_length=MAX_BATCH)


class FieldError(BaseModel):
    field: str = Field(description="where: a field, rides.<i>.<field>, or body")
    type: str = Field(description="pydantic's error type, e.g. missing, int_type, json_invalid")
    msg: str
    input: Any = Field(
        default=None,
        description="the value at fault, when small; a long string is cut to its first "
        "characters, objects and lists are left out",
    )


class ValidationErrors(BaseModel):
    detail: list[FieldError]


class Message(BaseModel):
    detail: str


class Prediction(BaseModel):
    duration: float = Field(description="predicted trip duration in minutes")
    model_version: str


class BatchPrediction(BaseModel):
    durations: list[float]
    model_version: str


def request_body(model: type[BaseModel]) -> dict:
    """`openapi_extra` describing a JSON body of this model, for a route that validates its body
    itself. The schema is self-contained (no $refs), so it needs no components of its own."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


# The answers besides 200, as the routes give them (documented in the OpenAPI document).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": Message, "description": "Body over MODEL_API_MAX_BODY_BYTES, or a batch over "
          f"{MAX_BATCH} rides"},
    415: {"model": Message, "description": "Content-Type is not application/json"},
    422: {"model": ValidationErrors, "description": "Invalid JSON or ride: each field at fault"},
    503: {"model": Message, "description": "No model loaded yet (see GET /ready for why)"},
}  # fmt: skip

"""Request and response models; validation errors name the field at fault (HTTP 422)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# TLC taxi zones are numbered 1-263, plus 264/265 for "unknown" and "outside NYC".
MIN_ZONE, MAX_ZONE = 1, 265
# Longer than any plausible metered trip; larger values are data errors, not rides.
MAX_TRIP_DISTANCE = 200.0
MAX_BATCH = 1000

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
    trip_distance: float = Field(
        ge=0, lt=MAX_TRIP_DISTANCE, allow_inf_nan=False, description="trip distance in miles"
    )


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rides: list[Ride] = Field(min_length=1, max_length=MAX_BATCH)


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

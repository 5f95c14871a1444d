"""Request and response models; validation errors name the field at fault (HTTP 422)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trip_model.rides import Ride

MAX_BATCH = 1000


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

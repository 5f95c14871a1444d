"""POST /predict and /predict/batch.

The body is validated straight from the JSON bytes by pydantic's core (`model_validate_json`),
not parsed into Python objects first and validated after, which is what FastAPI does for a
declared body parameter: for a 1,000-ride batch that is a quarter of the time. The same models
still describe the body in the OpenAPI document, and a bad body is still a 422 naming the field.
The handlers are `async`: a one-ride prediction is shorter than a hop to a thread. A batch's
prediction is not, and LightGBM releases the GIL while it predicts, so a batch is predicted in the
thread pool: the worker keeps reading requests meanwhile and can use a second core when most
connections have landed on it. Both are DirectRoutes (services/model_api/routing.py): they take the
Request and return the Response themselves, so FastAPI solves no parameters and re-validates no
response per request; the declared models still document both in the OpenAPI document.
"""

from __future__ import annotations

import os
import re
from typing import TypeVar

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from services.model_api.metrics import predictions
from services.model_api.routing import DirectRoute, json_response
from services.model_api.schemas import (
    ERROR_RESPONSES,
    Batch,
    BatchPrediction,
    Prediction,
    Ride,
    request_body,
)
from trip_model.serving import Loaded, features

router = APIRouter(tags=["predict"], route_class=DirectRoute)
M = TypeVar("M", bound=BaseModel)


# The request headers the routes read, in one pass over the raw ones: Starlette's
# `request.headers` decodes and compares every header on each lookup, a visible share of the
# app's time for one ride (docs/benchmarks.md). The first of a repeated header counts,
# as with Starlette's `get`; the server gives the names in lower case (ASGI).
WANTED = {b"content-type": 0, b"content-length": 1, b"x-request-id": 2}


def wanted_headers(request: Request) -> list[str]:
    """Content-Type, Content-Length and X-Request-ID, in that order ("" where absent)."""
    found: list[str | None] = [None, None, None]
    for key, value in request.scope["headers"]:
        i = WANTED.get(key)
        if i is not None and found[i] is None:
            found[i] = value.decode("latin-1")
    return [v or "" for v in found]


async def read_body(request: Request, declared: str = "") -> bytes:
    """The body, up to the limit: a declared length (`declared`, the Content-Length) over it is
    refused before anything is read, and a chunked body as soon as it passes the limit (never
    held whole)."""
    limit = request.app.state.settings.max_body_bytes
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    # Straight from the ASGI messages (Starlette's request.stream() is an async generator: a
    # few microseconds more per request, for nothing here).
    receive, chunks, size = request.receive, [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def body_too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"body exceeds the limit of {limit} bytes (MODEL_API_MAX_BODY_BYTES)",
    )


async def parse(request: Request, model: type[M], content_type: str, length: str) -> M:
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(
            status_code=415,
            detail=f"content-type must be application/json, got {content_type[:100] or 'none'!r}",
        )
    body = await read_body(request, length)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


# A caller's own request id is kept if it is a plausible one; otherwise the API makes one.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str) -> str:
    """The request's id (the X-Request-ID it came with, or a new one of 32 hex digits), returned
    in the response's header: the key of its rides in the prediction log."""
    return given if given and REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


def log_predictions(request: Request, rid: str, version: str, arrays, durations) -> None:
    prediction_log = request.app.state.prediction_log
    if prediction_log is not None:
        prediction_log.record(rid, version, arrays, durations)


def serving(request: Request) -> Loaded:
    # One read of the reference: the whole request uses one model version.
    loaded = request.app.state.model.current
    if loaded is None:
        raise HTTPException(status_code=503, detail=request.app.state.model.error)
    return loaded


@router.post(
    "/predict",
    response_model=Prediction,
    summary="Predict one ride's duration",
    openapi_extra=request_body(Ride),
    responses=ERROR_RESPONSES,
)
async def predict(request: Request) -> Response:
    content_type, length, given_id = wanted_headers(request)
    ride = await parse(request, Ride, content_type, length)
    loaded = serving(request)
    arrays = features([ride])
    durations = loaded.predict(*arrays)
    predictions(loaded.version).inc()
    rid = request_id(given_id)
    log_predictions(request, rid, loaded.version, arrays, durations)
    body = Prediction(duration=float(durations[0]), model_version=loaded.version)
    return json_response(body, {"X-Request-ID": rid})


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    summary="Predict many rides' durations",
    openapi_extra=request_body(Batch),
    responses=ERROR_RESPONSES,
)
async def predict_batch(request: Request) -> Response:
    content_type, length, given_id = wanted_headers(request)
    batch = await parse(request, Batch, content_type, length)
    loaded = serving(request)
    arrays = features(batch.rides)
    durations = await run_in_threadpool(loaded.predict, *arrays)
    predictions(loaded.version).inc(len(durations))
    rid = request_id(given_id)
    log_predictions(request, rid, loaded.version, arrays, durations)
    body = BatchPrediction(durations=durations.tolist(), model_version=loaded.version)
    return json_response(body, {"X-Request-ID": rid})

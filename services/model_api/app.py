"""The FastAPI application factory."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.model_api.metrics import (
    PREDICTION_LOG_DROPPED,
    PREDICTION_LOG_FAILED,
    PREDICTION_LOG_WRITTEN,
    MetricsMiddleware,
)
from services.model_api.routes import ops, predict
from services.model_api.schemas import MAX_BATCH
from services.model_api.settings import Settings, get_settings
from trip_model.prediction_log import PredictionLog
from trip_model.serving import ModelHolder

ECHO_CHARS = 64


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Start serving at once; the loader fills app.state.model in the background and
        # /ready says 503 (with the reason) until it has.
        app.state.settings = settings
        app.state.model = holder or ModelHolder(settings)
        app.state.model.start()
        app.state.prediction_log = None
        if settings.prediction_log:
            app.state.prediction_log = PredictionLog(
                settings.prediction_log,
                max_rows=settings.prediction_log_max_rows,
                flush_rows=settings.prediction_log_flush_rows,
                flush_seconds=settings.prediction_log_flush_seconds,
                on_written=PREDICTION_LOG_WRITTEN.inc,
                on_dropped=PREDICTION_LOG_DROPPED.inc,
                on_failed=PREDICTION_LOG_FAILED.inc,
            )
            app.state.prediction_log.start()
        yield
        app.state.model.stop()
        if app.state.prediction_log:
            app.state.prediction_log.close()

    app = FastAPI(
        title="NYC taxi trip duration",
        description=f"Serves models:/{settings.model_name}@{settings.model_alias} from MLflow.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(predict.router)
    app.include_router(ops.router)
    return app


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field at fault; an oversized batch is a 413 that states the limit.

    Inputs are echoed only when small, so a bad 1000-ride batch does not come back whole, and a
    long string only by its first ECHO_CHARS characters.
    """
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if err.get("type") == "too_long" and loc[-1:] == ["rides"]:
            size = len(err.get("input") or [])
            return JSONResponse(
                {"detail": f"rides: batch of {size} rides exceeds the limit of {MAX_BATCH}"},
                status_code=413,
            )
        item = {
            "field": ".".join(p for p in loc if p != "body") or "body",
            "type": err.get("type"),
            "msg": err.get("msg"),
        }
        value = err.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # NaN/Infinity are not JSON
        if isinstance(value, str) and len(value) > ECHO_CHARS:
            value = value[:ECHO_CHARS] + "..."  # enough to recognise it, not to reflect it
        if not isinstance(value, dict | list | bytes):
            item["input"] = value
        errors.append(item)
    return JSONResponse({"detail": errors}, status_code=422)

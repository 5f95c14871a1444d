"""The handler behind a Pub/Sub push subscription: `python -m streaming.push`, the streaming
image's command on Cloud Run (which sets PORT).

POST /pubsub/push takes one message: a ride event's prediction is published to the output topic
(STREAMING_OUTPUT) and a bad record to the dead-letter topic (STREAMING_DEAD_LETTER) with its
reason, and both are acknowledged (204). A prediction or letter not published, or no model yet,
is a 503: Pub/Sub delivers the message again, with the subscription's backoff, and after its last
attempt forwards it to the dead-letter topic. A body that is no push request is a 400 naming the
field. Who may call is Cloud Run's check of the subscription's OIDC token (its invoker grant), not
this app's. GET /health says the process is up.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from streaming import events, pubsub
from streaming.handler import Handler, NoModel

log = logging.getLogger("streaming.push")
MAX_BODY_BYTES = 16 * 1_048_576  # a Pub/Sub message is at most 10 MB, base64 adds a third


def create_app(handler: Handler) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        handler.holder.start()
        if handler.prediction_log is not None:
            handler.prediction_log.start()
        yield
        handler.holder.stop()
        if handler.prediction_log is not None:
            handler.prediction_log.close()

    app = FastAPI(title="Ride events from Pub/Sub push", lifespan=lifespan)

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/pubsub/push", status_code=204)
    async def push(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        body = await request.body()
        try:
            envelope = pubsub.PushEnvelope.model_validate_json(body)
        except ValidationError as exc:
            detail = [events.field_error(e) for e in exc.errors(include_url=False)]
            return JSONResponse({"detail": detail}, status_code=400)
        try:
            outcome = await run_in_threadpool(handler.handle, [pubsub.record(envelope)])
        except NoModel as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        if outcome.retry:
            return JSONResponse({"detail": "not delivered; deliver again"}, status_code=503)
        return Response(status_code=204)

    return app


def main() -> int:
    import uvicorn

    from streaming import service

    settings = service.settings_at_start()
    if settings is None:
        return 2
    handler = service.handler(
        settings, pubsub.Topic(settings.output), pubsub.Topic(settings.dead_letter)
    )
    uvicorn.run(create_app(handler), host="0.0.0.0", port=int(os.environ.get("PORT", "8080")),  # noqa: S104 - Cloud Run routes to it
                access_log=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

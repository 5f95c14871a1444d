"""GET /health (the process is alive), /ready (a model is loaded), /metrics (Prometheus).

/health and /ready are `async`: they only read memory, and a sync route would cost a hop to the
thread pool per request (the load balancer and the deploy scripts ask often). All three are
DirectRoutes (services/model_api/routing.py): they take the Request and return the Response."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.model_api.metrics import exposition
from services.model_api.routing import DirectRoute

router = APIRouter(tags=["operations"], route_class=DirectRoute)
HEALTHY = b'{"status":"ok"}'


@router.get("/health", summary="Liveness: the process answers")
async def health(request: Request) -> Response:
    return Response(HEALTHY, media_type="application/json")


@router.get(
    "/ready",
    summary="Readiness: a model is loaded, which version, and how fresh the registry's word is",
)
async def ready(request: Request) -> JSONResponse:
    holder = request.app.state.model
    body = {"model": holder.uri}
    loaded = holder.current
    if loaded is None:
        body |= {"status": "not ready", "reason": holder.error, "reason_code": holder.reason_code}
        return JSONResponse(body, status_code=503)
    body |= {
        "status": "ready",
        "model_version": loaded.version,
        "loaded_at": loaded.loaded_at,
        "predict_path": loaded.path,
    }
    # How current the served version is: when the registry last said where the alias points.
    checked = holder.checked_at
    body["registry"] = "ok" if holder.last_refresh == "ok" else holder.last_refresh
    body["registry_checked_at"] = checked
    body["stale_seconds"] = round(time.time() - checked, 1) if checked else None
    if holder.error:  # still serving, but the last refresh failed
        body["last_refresh_error"] = holder.error
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    payload, content_type = exposition()
    return Response(payload, media_type=content_type)

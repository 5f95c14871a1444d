"""Prometheus metrics: requests, latency and predictions, recorded by a small ASGI middleware.

With several uvicorn workers, set PROMETHEUS_MULTIPROC_DIR to an empty directory so /metrics
aggregates every worker (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("model_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "model_api_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PREDICTIONS = Counter("model_api_predictions_total", "Rides predicted", ["model_version"])
PREDICTION_LOG_WRITTEN = Counter(
    "model_api_prediction_log_written_total", "Rides written to the prediction log"
)
PREDICTION_LOG_DROPPED = Counter(
    "model_api_prediction_log_dropped_total", "Rides not logged: the log's buffer was full"
)
PREDICTION_LOG_FAILED = Counter(
    "model_api_prediction_log_failed_total", "Rides not logged: the write failed"
)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path: bounded labels)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status["code"])).inc()
            LATENCY.labels(path).observe(time.perf_counter() - start)

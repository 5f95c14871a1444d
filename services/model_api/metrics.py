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


# Labels are bounded: a route template (never a raw path), a known method or "other", a status.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_children: dict[tuple[str, str, int], tuple] = {}
_predictions: dict[str, object] = {}


def request_series(method: str, path: str, status: int) -> tuple:
    """The (request counter, latency histogram) children for these labels, looked up once: the
    client's `labels()` takes a lock and builds a key on every call, a tenth of a one-ride
    request's time in the app."""
    key = (method if method in METHODS else "other", path, status)
    series = _children.get(key)
    if series is None:  # the cache is as bounded as the labels: a made-up method adds nothing
        series = _children[key] = (REQUESTS.labels(key[0], path, str(status)), LATENCY.labels(path))
    return series


def predictions(version: str):
    """The predictions counter for a model version (versions served are few)."""
    counter = _predictions.get(version)
    if counter is None:
        counter = _predictions[version] = PREDICTIONS.labels(version)
    return counter


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
            requests, latency = request_series(scope["method"], path, status["code"])
            requests.inc()
            latency.observe(time.perf_counter() - start)

"""Run by Python at the start of each of the tracking server's processes (infra.mlflow_server.render
puts this directory on the server's PYTHONPATH, where Python looks for sitecustomize): a server
worker runs at most MLOPS_SERVER_REQUEST_THREADS requests in threads at once; the others wait for a
thread in the worker's event loop.

Why: MLflow's log_batch holds two connections of one pool at once (a session for the run, another
inside it for the metrics), and the pools are bounded to fit the database (infra.mlflow_server.
pool_for). A worker runs up to 40 requests in threads (anyio's default): once as many log_batch
requests as the pool has connections hold one each, each waits for a second until the pool's 30 s
timeout, then fails (measured: 16 clients on 2 workers with pools of 10: a 30 s stall and an
error). With at most half a pool's connections of requests at once, each can hold two.

The bound is anyio's default thread limiter (which MLflow's Flask app and Starlette's thread pool
use), set through its public API the first time a worker's event loop hands work to a thread.
It imports only what the server's environment has, because on the VM it runs from a file beside
the server's virtualenv; with the variable unset it does nothing, and with a value that is no
whole number from 1 the process stops and says so.
"""

from __future__ import annotations

import os

REQUEST_THREADS = "MLOPS_SERVER_REQUEST_THREADS"


def bound_request_threads(limit: int) -> None:
    """At most `limit` calls of anyio.to_thread.run_sync at once in each event loop (idempotent)."""
    import anyio.to_thread as to_thread

    original = to_thread.run_sync
    if getattr(original, "bounded_to", None) is not None:
        return

    async def run_sync(func, *args, **kwargs):
        limiter = to_thread.current_default_thread_limiter()  # this event loop's
        if limiter.total_tokens != limit:
            limiter.total_tokens = limit
        return await original(func, *args, **kwargs)

    run_sync.bounded_to = limit
    to_thread.run_sync = run_sync


def _limit(value: str) -> int:
    # SystemExit, not an error: Python would print an error in sitecustomize and go on unbounded.
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{REQUEST_THREADS} must be a whole number from 1, got {value!r}")
    return int(value)


if os.environ.get(REQUEST_THREADS) is not None:
    bound_request_threads(_limit(os.environ[REQUEST_THREADS]))

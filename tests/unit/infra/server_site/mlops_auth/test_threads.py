"""mlops_auth.threads: a worker runs at most the bound of requests in threads at once, set when
its event loop starts."""

from __future__ import annotations

import threading
import time

import anyio
import anyio.to_thread
from mlops_auth.threads import ThreadBound

from infra.mlflow_server import request_threads


def most_at_once(app, lifespan: bool) -> int:
    """12 blocking calls handed to threads at once, as a worker hands Flask its requests, after
    the app saw its lifespan startup (or its first request): how many ran at the same time."""
    running = most = 0
    lock = threading.Lock()

    def work():
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main():
        async def receive():
            return {"type": "lifespan.startup"}

        if lifespan:
            await app({"type": "lifespan"}, receive, None)
        else:
            await app({"type": "http"}, None, None)
        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(anyio.to_thread.run_sync, work)

    anyio.run(main)
    return most


async def inner(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()


def test_the_bound_is_set_when_the_worker_starts_or_at_its_first_request():
    assert most_at_once(ThreadBound(inner, limit=3), lifespan=True) == 3
    assert most_at_once(ThreadBound(inner, limit=2), lifespan=False) == 2


def test_without_a_bound_anyio_s_default_stands():
    assert most_at_once(ThreadBound(inner, limit=None), lifespan=True) == 12  # anyio allows 40


def test_the_bound_lets_every_request_hold_two_connections_of_its_pool():
    """MLflow's log_batch holds two of a pool's connections at once."""
    for pool_size, overflow in ((1, 1), (2, 1), (5, 5), (5, 10)):
        threads = request_threads(pool_size, overflow)
        assert threads >= 1 and 2 * threads <= pool_size + overflow
    assert request_threads(5, 10) == 7

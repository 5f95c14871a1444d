"""How many requests a server worker runs in threads at once.

MLflow's Flask app runs in anyio's worker threads (40 per event loop by default). MLflow's
log_batch holds two connections of one database pool at once (a session for the run, another
inside it for the metrics), and the pools are bounded to fit the database
(infra.mlflow_server.pool_for): once as many log_batch requests as a pool has connections hold
one each, all wait for a second until the pool's timeout, then fail. With at most half a pool's
connections of requests at once, each can hold two; the others wait in the event loop.
"""

from __future__ import annotations


def bound(limit: int) -> None:
    """At most `limit` anyio worker threads at once in the running event loop (anyio's public
    API: the default limiter, which Starlette and MLflow's WSGI bridge use)."""
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = limit


class ThreadBound:
    """An ASGI middleware that sets the bound when the worker's event loop starts (its lifespan
    startup; or its first request, where the server runs no lifespan)."""

    def __init__(self, app, *, limit: int | None) -> None:
        self.app = app
        self.limit = limit

    def _apply(self) -> None:
        if self.limit is not None:
            bound(self.limit)
            self.limit = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":

            async def starting():
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._apply()
                return message

            await self.app(scope, starting, send)
            return
        if self.limit is not None:
            self._apply()
        await self.app(scope, receive, send)

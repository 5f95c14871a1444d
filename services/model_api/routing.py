"""DirectRoute: a FastAPI route whose endpoint takes the Request and returns its Response itself.

FastAPI's own route handler solves the endpoint's parameters as dependencies and, on the way out,
validates the returned object against `response_model` and encodes it; on a one-ride prediction
that machinery cost more than the prediction itself (figures: docs/benchmarks.md, "Figures moved
from code comments"). The API's hot routes already read and validate their body
themselves (routes/predict.py) and build their JSON with the same pydantic models, so they are
served by this route class, the extension point FastAPI documents ("Custom Request and APIRoute
class"): the route, its OpenAPI entry, `response_model` and `responses` stay as declared; only the
per-request handler changes. Exceptions (HTTPException, RequestValidationError) reach the app's
handlers as before.

Because nothing solves its parameters, a DirectRoute endpoint takes the Request and nothing else:
one that declares a dependency or another parameter (which FastAPI would fill and this route
never would) is refused when the app is built, not found missing at a request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from pydantic import BaseModel


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        unfilled = [
            *(p.name for p in (*dependant.path_params, *dependant.query_params,
                               *dependant.header_params, *dependant.cookie_params,
                               *dependant.body_params)),
            *(f"Depends({getattr(d.call, '__name__', d.call)})" for d in dependant.dependencies),
            *(name for name in (dependant.websocket_param_name, dependant.http_connection_param_name,
                                dependant.response_param_name, dependant.background_tasks_param_name,
                                dependant.security_scopes_param_name) if name),
        ]  # fmt: skip
        if unfilled or dependant.request_param_name is None:
            raise TypeError(
                f"DirectRoute {path}: {getattr(endpoint, '__name__', endpoint)} must take the "
                "Request and nothing else (nothing solves a DirectRoute's parameters); it "
                f"declares {', '.join(unfilled) or 'no Request'}"
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        if inspect.iscoroutinefunction(endpoint):
            return endpoint

        async def in_thread(request: Request) -> Response:  # a sync endpoint, as FastAPI runs it
            return await run_in_threadpool(endpoint, request)

        return in_thread


def json_response(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """A response model's JSON, encoded by pydantic's core (what FastAPI would have sent)."""
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)

"""DirectRoute takes the Request and nothing else: an endpoint declaring what it would never fill
is refused when the app is built."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request

from services.model_api.routing import DirectRoute


def test_an_endpoint_whose_parameters_a_direct_route_would_never_fill_is_refused():
    router = APIRouter(route_class=DirectRoute)

    def current_user() -> str:
        return "someone"

    with pytest.raises(TypeError, match=r"DirectRoute /a: takes_a_limit must take the Request and "
                       r"nothing else .* declares limit"):  # fmt: skip

        @router.get("/a")
        def takes_a_limit(request: Request, limit: int = 10): ...

    with pytest.raises(TypeError, match=r"declares Depends\(current_user\)"):

        @router.get("/b", dependencies=[Depends(current_user)])
        def guarded(request: Request): ...

    with pytest.raises(TypeError, match=r"declares Depends\(current_user\)"):

        @router.get("/c")
        def with_user(request: Request, user: str = Depends(current_user)): ...

    with pytest.raises(TypeError, match="declares no Request"):

        @router.get("/d")
        def no_request(): ...

    @router.get("/ok")
    async def fine(request: Request): ...

    assert [route.path for route in router.routes] == ["/ok"]


def test_the_apis_own_routes_are_all_direct_and_pass():
    from services.model_api.routes import ops, predict

    routes = [*predict.router.routes, *ops.router.routes]
    assert all(isinstance(route, DirectRoute) for route in routes)
    assert {"/predict", "/predict/batch", "/health", "/ready"} <= {route.path for route in routes}

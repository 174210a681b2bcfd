"""Answer the plain single-image prediction ahead of FastAPI's own request stack.

``POST /api/v1/predict`` without a query string is most of the traffic, and every
parameter then takes its default. FastAPI's entry (telemetry checks that read the
environment), Starlette's error and exception layers, the router's path matching
and FastAPI's request handling cost more CPU than the model itself
(benchmarks/RESULTS.md), so ``DigitService`` sends such a request straight to
``PredictEndpoint`` through a copy of the service's own middlewares: request id and
access line, metrics, the 500 guard and CORS when configured. Requests with a query
string, and every other path, go through FastAPI as usual, so their parameters are
validated and documented in one place.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from mnist_backend.api.deps import get_prediction_context
from mnist_backend.api.handlers import handle_client_disconnect, handle_domain_error
from mnist_backend.api.routes.predict import PREDICT_PATH, predict_one, router
from mnist_backend.errors import MnistBackendError

# Builds the middlewares around the endpoint, innermost first.
WrapEndpoint = Callable[[ASGIApp], ASGIApp]


def is_plain_prediction(scope: Scope) -> bool:
    """Return whether ``scope`` is ``POST /api/v1/predict`` without a query string."""
    return (
        scope["type"] == "http"
        and scope["path"] == PREDICT_PATH
        and scope["method"] == "POST"
        and not scope["query_string"]
    )


class DigitService(FastAPI):
    """The FastAPI application, with plain predictions dispatched ahead of its stack.

    Limit: ``app.dependency_overrides`` and FastAPI's OpenTelemetry instrumentation
    do not reach the plain prediction, so a test changes its settings through
    ``create_app(settings)`` instead.
    """

    def install_fast_path(self, wrap: WrapEndpoint) -> None:
        """Answer plain predictions with ``PredictEndpoint`` inside ``wrap``."""
        self._fast_path: ASGIApp | None = wrap(PredictEndpoint(self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = getattr(self, "_fast_path", None)
        if fast_path is not None and is_plain_prediction(scope):
            scope["app"] = self
            await fast_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class PredictEndpoint:
    """Call ``predict_one`` and turn its domain errors into their JSON responses."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        # The metrics label requests with the matched route's template.
        self._route = _predict_route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self._route
        request = Request(scope, receive)
        response: Response
        try:
            context = await get_prediction_context(request)
            response = await predict_one(request, context)
        except MnistBackendError as exc:
            response = await handle_domain_error(request, exc)
        except ClientDisconnect as exc:
            response = await handle_client_disconnect(request, exc)
        await response(scope, receive, send)


def _predict_route() -> BaseRoute:
    """Return the route that documents ``POST /api/v1/predict`` in OpenAPI."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == PREDICT_PATH:
            return route
    raise LookupError(f"No route serves {PREDICT_PATH}.")

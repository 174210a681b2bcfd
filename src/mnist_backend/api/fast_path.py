"""Answer the plain single-image prediction without FastAPI's routing and dependencies.

``POST /api/v1/predict`` without a query string is most of the traffic, and every
parameter then takes its default. Routing it through Starlette's exception layer,
the router's path matching and FastAPI's request handling cost more CPU than the
model itself (benchmarks/RESULTS.md), so this middleware, innermost of the
service's own, calls ``predict_one`` directly. The middlewares around it still give
the request its id, access line, metrics, CORS headers and 500 handling. Requests
with a query string, and every other path, go through FastAPI as usual, so their
parameters are validated and documented in one place.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from mnist_backend.api.deps import get_prediction_context
from mnist_backend.api.handlers import handle_client_disconnect, handle_domain_error
from mnist_backend.api.routes.predict import PREDICT_PATH, predict_one, router
from mnist_backend.errors import MnistBackendError


class PredictFastPath:
    """Call ``predict_one`` for ``POST /api/v1/predict`` without a query string.

    Limit: ``app.dependency_overrides`` do not reach this path, so a test changes the
    prediction's settings through ``create_app(settings)`` instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The metrics label requests with the matched route's template.
        self._route = _predict_route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PREDICT_PATH
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return

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

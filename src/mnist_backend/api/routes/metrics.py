"""Prometheus scrape endpoint: every metric of every worker, in the text format."""

from __future__ import annotations

from functools import partial

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from mnist_backend.metrics import CONTENT_TYPE, ServiceMetrics, render_metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Metrics text."}},
)
async def export_metrics(request: Request) -> Response:
    """Return the service's metrics in the Prometheus text format.

    With several worker processes the values are merged across the workers, so any
    worker answers for all of them; per-worker series carry a `pid` label.
    """
    metrics: ServiceMetrics = request.app.state.metrics
    # Merging the workers' files reads from disk; keep it off the event loop.
    body = await anyio.to_thread.run_sync(partial(render_metrics, metrics))
    return Response(body, media_type=CONTENT_TYPE)

"""Measure what MetricsMiddleware adds to one request, in microseconds.

Calls a bare ASGI endpoint directly (no sockets, no HTTP parsing) many times with
and without the middleware and prints the difference per request. With
``--multiprocess`` the values go to memory-mapped files, as under
``mnist-backend serve``.

Usage: python scripts/measure_metrics_overhead.py [--requests N] [--multiprocess]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--multiprocess", action="store_true")
    return parser.parse_args()


async def _endpoint(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class _Route:
    path = "/api/v1/predict"


async def _time_requests(app: Any, requests: int) -> float:
    """Return the mean seconds per request of ``app`` over ``requests`` calls."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/v1/predict",
            "route": _Route(),
        }
        await app(scope, receive, send)
    return (time.perf_counter() - started) / requests


def main() -> int:
    arguments = _parse_arguments()
    if arguments.multiprocess:
        # Must be set before prometheus-client is first imported.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    from mnist_backend.metrics import MetricsMiddleware, ServiceMetrics

    measured = MetricsMiddleware(_endpoint, ServiceMetrics())
    asyncio.run(_time_requests(measured, 1000))  # warm the label caches
    bare = asyncio.run(_time_requests(_endpoint, arguments.requests))
    with_metrics = asyncio.run(_time_requests(measured, arguments.requests))
    mode = "multiprocess" if arguments.multiprocess else "single process"
    print(
        f"{mode}: bare {bare * 1e6:.2f} us, with metrics {with_metrics * 1e6:.2f} us, "
        f"overhead {(with_metrics - bare) * 1e6:.2f} us per request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Graceful shutdown: readiness fails at once, requests in flight finish, exit 0."""

from __future__ import annotations

import asyncio
import io
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from mnist_backend.shutdown import ShutdownSignal

IN_FLIGHT_REQUESTS = 30


def _large_seven_png(size: int = 3000) -> bytes:
    """A 7 on a large canvas, which takes tens of milliseconds to decode."""
    image = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(image)
    stroke = size // 12
    pen.line([(size * 0.2, size * 0.15), (size * 0.8, size * 0.15)], 0, stroke)
    pen.line([(size * 0.8, size * 0.15), (size * 0.4, size * 0.85)], 0, stroke)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def _burst_then_terminate(
    url: str, process: Any, upload: bytes
) -> tuple[list[int], list[float], float]:
    """Send a burst of predictions, SIGTERM the server while they run, gather them.

    The signal goes out when the first answer arrives: the server decodes as many
    uploads at a time as it has cores, so most of the burst is still in flight.
    Returns each request's status (0 when it got no answer), the times the answers
    arrived, and the time the signal was sent.
    """
    finished_at: list[float] = []
    first_answer = asyncio.Event()
    limits = httpx.Limits(max_connections=IN_FLIGHT_REQUESTS)

    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:

        async def predict() -> int:
            try:
                response = await client.post(
                    "/api/v1/predict", files={"file": ("seven.png", upload)}
                )
            except httpx.TransportError:
                return 0
            finally:
                finished_at.append(time.monotonic())
                first_answer.set()
            return response.status_code

        requests = [asyncio.create_task(predict()) for _ in range(IN_FLIGHT_REQUESTS)]
        await first_answer.wait()
        signalled_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        statuses = await asyncio.gather(*requests)
    return list(statuses), finished_at, signalled_at


def test_sigterm_during_a_burst_loses_no_request_and_exits_0(
    start_server: Any, model_dir: Path
) -> None:
    server = start_server(
        model_dir,
        env={"MNIST_DRAIN_TIMEOUT_SECONDS": "30"},
        arguments=["--workers", "1"],
    )

    statuses, finished_at, signalled_at = asyncio.run(
        _burst_then_terminate(server.url, server.process, _large_seven_png())
    )
    exit_status = server.process.wait(timeout=60)

    assert statuses == [200] * IN_FLIGHT_REQUESTS
    # The burst really overlapped the signal: some answers came after it.
    assert max(finished_at) > signalled_at
    assert exit_status == 0


def test_ready_answers_503_shutting_down_once_shutdown_begins(
    client: TestClient,
) -> None:
    before = client.get("/ready")
    client.app.state.shutdown.begin()

    after = client.get("/ready")

    assert before.status_code == 200
    assert after.status_code == 503
    assert after.json() == {
        "detail": "The service is shutting down; it finishes the requests in flight.",
        "code": "shutting_down",
        "request_id": after.headers["X-Request-ID"],
    }


@pytest.fixture
def sigterm_recorder() -> Any:
    """Make SIGTERM call a recorder for the test's duration; restore it after."""
    received: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(1))
    yield received
    signal.signal(signal.SIGTERM, original)


def test_shutdown_signal_marks_shutdown_and_calls_the_servers_handler(
    sigterm_recorder: list[int],
) -> None:
    shutdown = ShutdownSignal()
    installed = shutdown.install()

    signal.raise_signal(signal.SIGTERM)
    shutdown.uninstall()
    signal.raise_signal(signal.SIGTERM)

    assert installed is True
    assert shutdown.is_shutting_down is True
    # Once while installed (chained), once after uninstall (the server's alone).
    assert sigterm_recorder == [1, 1]

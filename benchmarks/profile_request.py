"""Where one prediction request spends its CPU time, measured inside one process.

Calls the ASGI app directly (no socket, no uvicorn) with the benchmark's PNG digit,
sequentially and with many requests in flight, and times the steps on their own:
decoding and preparing the digit, the model at batch sizes 1 and 32, and the rest
of the request (framework, multipart parsing, middleware, logging, JSON). With
``--cprofile`` it also prints the functions that take the most time.

    .venv/bin/python benchmarks/profile_request.py [--requests 3000] [--cprofile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import write_digit_png

from mnist_backend.api.main import create_app
from mnist_backend.api.routes import predict
from mnist_backend.batching import Batcher, InferenceResult
from mnist_backend.config import get_settings
from mnist_backend.inference import load_predictor
from mnist_backend.preprocessing import preprocess_upload

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO_ROOT / "models"
BOUNDARY = "profileboundary"
# The profile runs the app with one request in flight, then with this many.
MOST_IN_FLIGHT = 64


def cpu_microseconds_per_call(function: Callable[[], object], calls: int) -> float:
    """Return the process CPU time (all threads) per call, in microseconds."""
    for _ in range(min(100, calls)):
        function()
    started = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - started) / calls * 1e6


def drawn_digit_png(size: int) -> bytes:
    """Return a size x size PNG of a black 7 on white, as a client would draw it."""
    image = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(image)
    points = [(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]
    pen.line([(x * size, y * size) for x, y in points], fill=0, width=size // 10)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def thread_hop_microseconds(calls: int) -> tuple[float, float]:
    """Return the CPU and wall time of one anyio hop to a worker thread and back."""

    def nothing() -> None:
        return None

    for _ in range(200):
        await anyio.to_thread.run_sync(nothing)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await anyio.to_thread.run_sync(nothing)
    cpu = (time.process_time() - cpu_started) / calls * 1e6
    return cpu, (time.perf_counter() - wall_started) / calls * 1e6


def inline_decoding_costs(upload: bytes) -> list[str]:
    """Return report lines: preparing uploads of growing size against a thread hop."""
    lines = []
    uploads = {"MNIST digit 28x28": upload}
    uploads.update({f"drawn 7 {n}x{n}": drawn_digit_png(n) for n in (64, 128, 512)})
    for label, data in uploads.items():
        microseconds = cpu_microseconds_per_call(
            lambda data=data: preprocess_upload(data, max_pixels=10**8), 300
        )
        lines.append(
            f"{label} PNG ({len(data)} bytes, {_pixels(data)} pixels): "
            f"{microseconds:.0f} us CPU to decode and prepare"
        )
    cpu, wall = asyncio.run(thread_hop_microseconds(3000))
    lines.append(
        f"one hop to a worker thread and back (anyio.to_thread): {cpu:.0f} us CPU, "
        f"{wall:.0f} us wall"
    )
    return lines


def _pixels(upload: bytes) -> int:
    with Image.open(io.BytesIO(upload)) as image:
        return image.width * image.height


@contextlib.asynccontextmanager
async def _stubbed(upload: bytes, active: bool) -> AsyncIterator[None]:
    """Replace decoding and the model with precomputed results while active."""
    if not active:
        yield
        return
    prepared = preprocess_upload(upload, max_pixels=10**7)
    result = InferenceResult(np.full(10, 0.1, dtype=np.float32), "stub")

    async def precomputed(self: Batcher, tensor: np.ndarray) -> InferenceResult:
        return result

    original_predict, original_preprocess = Batcher.predict, predict.preprocess_upload
    Batcher.predict = precomputed  # type: ignore[method-assign]
    predict.preprocess_upload = lambda data, max_pixels: prepared
    try:
        yield
    finally:
        Batcher.predict = original_predict  # type: ignore[method-assign]
        predict.preprocess_upload = original_preprocess


def request_scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/predict",
        "raw_path": b"/api/v1/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def multipart_body(upload: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        'filename="digit.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    return head + upload + f"\r\n--{BOUNDARY}--\r\n".encode()


async def drive_app(
    upload: bytes, requests: int, in_flight: int, *, stub_work: bool = False
) -> float:
    """Return the CPU microseconds per request of the app, ``in_flight`` at a time.

    With ``stub_work`` decoding and the model are replaced by precomputed results,
    which leaves the cost of everything else: framework, middleware, multipart
    parsing, logging, metrics and the JSON response.
    """
    # Settings come from the environment, as in `mnist-backend serve`: settings
    # passed to create_app() install a dependency override, which FastAPI resolves
    # anew on every request.
    os.environ.update({"MNIST_MODEL_DIR": str(MODEL_DIR), "MNIST_LOG_FORMAT": "json"})
    get_settings.cache_clear()
    app = create_app()
    body = multipart_body(upload)
    scope = request_scope(body)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def client(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    async with app.router.lifespan_context(app), _stubbed(upload, stub_work):
        await client(200)
        started = time.process_time()
        await asyncio.gather(*(client(requests // in_flight) for _ in range(in_flight)))
        elapsed = time.process_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {sorted(set(statuses))}")
    return elapsed / (requests // in_flight * in_flight) * 1e6


def measure_steps(upload: bytes, requests: int) -> dict[str, float]:
    """Return the CPU microseconds of each step of a request, and of whole requests."""
    predictor = load_predictor(MODEL_DIR, runtime="onnx", warm_up_batch_sizes=(1, 32))
    tensor = preprocess_upload(upload, max_pixels=10**7).tensor
    single, full = tensor[np.newaxis], np.stack([tensor] * 32)
    steps = {
        "preprocess": cpu_microseconds_per_call(
            lambda: preprocess_upload(upload, max_pixels=10**7), 3000
        ),
        "model_batch_1": cpu_microseconds_per_call(
            lambda: predictor.predict_batch(single), 2000
        ),
        "model_batch_32": cpu_microseconds_per_call(
            lambda: predictor.predict_batch(full), 100
        )
        / 32,
    }
    for in_flight in (1, MOST_IN_FLIGHT):
        steps[f"request_{in_flight}_in_flight"] = asyncio.run(
            drive_app(upload, requests, in_flight)
        )
        steps[f"request_{in_flight}_in_flight_without_decoding_and_model"] = (
            asyncio.run(drive_app(upload, requests, in_flight, stub_work=True))
        )
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    arguments = parser.parse_args()
    if arguments.requests < MOST_IN_FLIGHT:
        parser.error(
            f"--requests must be at least {MOST_IN_FLIGHT}, the most in flight"
        )
    os.chdir(REPO_ROOT)
    upload = write_digit_png(Path(tempfile.mkdtemp())).read_bytes()
    # The app logs one access line per request to stdout; keep them off the report.
    report = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)

    steps = measure_steps(upload, arguments.requests)
    inline_costs = inline_decoding_costs(upload)
    if arguments.json:
        print(json.dumps({"steps": steps, "inline": inline_costs}), file=report)
    else:
        for label, microseconds in steps.items():
            print(f"{label:60s} {microseconds:8.1f} us CPU", file=report)
        for line in inline_costs:
            print(line, file=report)

    if arguments.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        asyncio.run(drive_app(upload, arguments.requests, 64))
        profile.disable()
        stats = pstats.Stats(profile, stream=report)
        stats.sort_stats("tottime").print_stats(30)
    report.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

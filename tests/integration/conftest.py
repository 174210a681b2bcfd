"""Fixtures for HTTP tests: an app over a test artifact, and uploads to send it."""

from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from mnist_backend.api.main import create_app
from mnist_backend.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_MODEL_DIR = REPO_ROOT / "models"
MNIST_DIR = REPO_ROOT / "training" / "data" / "01_raw" / "mnist"

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(model_dir: Path) -> Iterator[MakeClient]:
    """Return a function starting the app (lifespan included) with settings changes."""
    clients: list[TestClient] = []

    def make(**changes: object) -> TestClient:
        fields: dict[str, object] = {"model_dir": model_dir, "log_format": "text"}
        fields.update(changes)
        client = TestClient(create_app(Settings.model_validate(fields)))
        clients.append(client)
        return client.__enter__()

    yield make

    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    """A client of the app serving a seeded, untrained ConvNet."""
    return make_client()


def encode_image(image: Image.Image, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def draw_seven(size: int = 200) -> Image.Image:
    """Return a black 7 drawn with thick strokes on a white canvas, like a sketch."""
    image = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(image)
    scale = size / 200
    stroke = max(2, int(18 * scale))
    pen.line(
        [(50 * scale, 40 * scale), (150 * scale, 40 * scale)], fill=0, width=stroke
    )
    pen.line(
        [(150 * scale, 40 * scale), (85 * scale, 165 * scale)], fill=0, width=stroke
    )
    return image


@pytest.fixture
def seven_png() -> bytes:
    return encode_image(draw_seven())


@pytest.fixture
def blank_png() -> bytes:
    return encode_image(Image.new("L", (64, 64), 255))


def _read_idx(path: Path, header_bytes: int, count: int, item_bytes: int) -> bytes:
    with gzip.open(path, "rb") as stream:
        stream.read(header_bytes)
        return stream.read(count * item_bytes)


@pytest.fixture(scope="session")
def mnist_test_digits() -> list[tuple[bytes, int]]:
    """The first 20 MNIST test digits as PNG uploads (white on black) with labels."""
    count = 20
    pixels = _read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz", 16, count, 28 * 28)
    labels = _read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", 8, count, 1)
    images = np.frombuffer(pixels, dtype=np.uint8).reshape(count, 28, 28)
    return [
        (encode_image(Image.fromarray(image)), int(label))
        for image, label in zip(images, labels, strict=True)
    ]


@pytest.fixture
def published_client(make_client: MakeClient) -> TestClient:
    """A client of the app serving the published model in ``models/``."""
    if not (PUBLISHED_MODEL_DIR / "model_card.json").is_file():
        pytest.fail(
            "models/model_card.json is missing; the published model is committed"
        )
    return make_client(model_dir=PUBLISHED_MODEL_DIR)


# A real server process, for behaviour only a socket and signals show.

SERVER_STARTUP_TIMEOUT_S = 60.0


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


StartServer = Callable[..., RunningServer]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server not ready in time:\n{server.log_text()}")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Return a function running ``mnist-backend serve`` on a free local port.

    ``env`` adds MNIST_ variables; ``arguments`` adds command-line options. The
    function returns once /ready answers 200; every server is stopped afterwards.
    """
    servers: list[RunningServer] = []

    def start(
        model_dir: Path,
        *,
        env: dict[str, str] | None = None,
        arguments: Sequence[str] = (),
    ) -> RunningServer:
        port = _free_port()
        command = [
            sys.executable, "-m", "mnist_backend.cli", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--model-dir", str(model_dir), *arguments,
        ]  # fmt: skip
        environment = {**os.environ, "MNIST_LOG_FORMAT": "json", **(env or {})}
        log_path = tmp_path / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment
            )
        server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
        servers.append(server)
        _wait_until_ready(server)
        return server

    yield start

    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=30)

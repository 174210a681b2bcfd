"""Fixtures for browser tests: a real service process, one Chromium, pages and pens.

The service runs as ``uvicorn`` on a free port of 127.0.0.1 with the published model
in ``models/``, so the page is tested exactly as a user would reach it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps
from playwright.sync_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_MODEL_DIR = REPO_ROOT / "models"
SCREENSHOT_DIR = REPO_ROOT / "test-output"
STROKES_FILE = Path(__file__).with_name("strokes.json")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT_S = 120.0
DESKTOP_VIEWPORT: ViewportSize = {"width": 1024, "height": 860}
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}

Point = tuple[float, float]
Stroke = list[Point]
DrawDigit = Callable[[Page, str], None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _is_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_ready(
    server: subprocess.Popen[bytes], base_url: str, log: Path
) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the service exited during start-up:\n{log.read_text()}")
        if _is_ready(base_url):
            return
        time.sleep(0.25)
    pytest.fail(f"the service was not ready within {SERVER_START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a uvicorn process serving the published model."""
    if not (PUBLISHED_MODEL_DIR / "model_card.json").is_file():
        pytest.fail(
            "models/model_card.json is missing; the published model is committed"
        )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    environment = {
        **os.environ,
        "MNIST_MODEL_DIR": str(PUBLISHED_MODEL_DIR),
        "MNIST_LOG_FORMAT": "text",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "mnist_backend.api.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as log_stream:
        server = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdout=log_stream,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(server, base_url, log)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def published_card() -> dict[str, Any]:
    """The model card of the model the service serves."""
    card: dict[str, Any] = json.loads(
        (PUBLISHED_MODEL_DIR / "model_card.json").read_text(encoding="utf-8")
    )
    return card


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; install it with: apt-get install chromium")
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


def open_playground(context: BrowserContext, server_url: str) -> Page:
    """Return a page showing the playground with the model details loaded."""
    page = context.new_page()
    page.goto(f"{server_url}/")
    page.locator("#model-info[data-state='ready']").wait_for()
    return page


@pytest.fixture
def page(browser: Browser, server_url: str) -> Iterator[Page]:
    """The playground in a fresh desktop-sized browser context."""
    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    yield open_playground(context, server_url)
    context.close()


@pytest.fixture
def phone_page(browser: Browser, server_url: str) -> Iterator[Page]:
    """The playground on a phone-sized touch screen."""
    context = browser.new_context(
        viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield open_playground(context, server_url)
    context.close()


@pytest.fixture(scope="session")
def digit_strokes() -> dict[str, list[Stroke]]:
    """Recorded pen paths per digit, in fractions of the canvas size."""
    recorded = json.loads(STROKES_FILE.read_text(encoding="utf-8"))
    return {
        digit: [[(x, y) for x, y in stroke] for stroke in strokes]
        for digit, strokes in recorded["digits"].items()
    }


def _to_page_points(page: Page, stroke: Stroke) -> list[Point]:
    box = page.locator("#canvas").bounding_box()
    if box is None:
        pytest.fail("the canvas is not displayed")
    return [
        (box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke
    ]


@pytest.fixture
def draw_digit(digit_strokes: dict[str, list[Stroke]]) -> DrawDigit:
    """Return a function drawing a recorded digit on the canvas with the mouse."""

    def draw(page: Page, digit: str) -> None:
        for stroke in digit_strokes[digit]:
            first, *rest = _to_page_points(page, stroke)
            page.mouse.move(*first)
            page.mouse.down()
            for point in rest:
                page.mouse.move(*point, steps=4)
            page.mouse.up()

    return draw


@pytest.fixture
def touch_digit(digit_strokes: dict[str, list[Stroke]]) -> DrawDigit:
    """Return a function drawing a recorded digit with a finger on a touch screen."""

    def draw(page: Page, digit: str) -> None:
        session = page.context.new_cdp_session(page)
        for stroke in digit_strokes[digit]:
            first, *rest = _to_page_points(page, stroke)
            _touch(session, "touchStart", first)
            for point in rest:
                _touch(session, "touchMove", point)
            _touch_end(session)
        session.detach()

    return draw


def _touch_end(session: CDPSession) -> None:
    session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _touch(session: CDPSession, kind: str, point: Point) -> None:
    touch_points = [{"x": point[0], "y": point[1]}]
    session.send(
        "Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points}
    )


@pytest.fixture
def screenshot_dir() -> Path:
    """The git-ignored folder where screenshots are kept for a person to look at."""
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    return SCREENSHOT_DIR


MNIST_TEST_IMAGES = REPO_ROOT / "training/data/01_raw/mnist/t10k-images-idx3-ubyte.gz"
MNIST_TEST_LABELS = REPO_ROOT / "training/data/01_raw/mnist/t10k-labels-idx1-ubyte.gz"


@pytest.fixture(scope="session")
def scanned_mnist_digit() -> tuple[bytes, int]:
    """An MNIST test digit as a scan would show it: 280x280, dark ink on white.

    Returns the PNG upload and the digit's label.
    """
    index = 1
    with gzip.open(MNIST_TEST_IMAGES, "rb") as stream:
        stream.seek(16 + index * 28 * 28)
        pixels = np.frombuffer(stream.read(28 * 28), dtype=np.uint8).reshape(28, 28)
    with gzip.open(MNIST_TEST_LABELS, "rb") as stream:
        stream.seek(8 + index)
        label = stream.read(1)[0]

    scan = ImageOps.invert(Image.fromarray(pixels)).resize(
        (280, 280), Image.Resampling.BICUBIC
    )
    buffer = io.BytesIO()
    scan.save(buffer, format="PNG")
    return buffer.getvalue(), int(label)

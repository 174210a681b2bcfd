"""The service as deployed: the console command running uvicorn on a real socket."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mnist_backend.cli import main

STARTUP_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server_url(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """Start ``mnist-backend serve`` on a free local port; stop it afterwards."""
    port = _free_port()
    command = [
        sys.executable, "-m", "mnist_backend.cli", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--model-dir", str(model_dir),
    ]  # fmt: skip
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=15)


def _wait_until_ready(url: str) -> httpx.Response:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            return httpx.get(f"{url}/ready", timeout=2.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_served_process_becomes_ready_and_predicts(
    server_url: str, seven_png: bytes
) -> None:
    ready = _wait_until_ready(server_url)

    response = httpx.post(
        f"{server_url}/api/v1/predict",
        files={"file": ("7.png", seven_png, "image/png")},
        timeout=10.0,
    )

    body = response.json()
    assert (ready.status_code, response.status_code) == (200, 200)
    assert (body["model_version"], len(body["probabilities"])) == (
        "20261203.120000-testtest",
        10,
    )
    assert body["prediction"] == max(
        range(10), key=lambda digit: body["probabilities"][digit]
    )


def test_serve_refuses_to_start_with_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MNIST_MAX_UPLOAD_BYTES", "lots")

    exit_status = main(["serve", "--port", "0"])

    assert exit_status == 2
    assert capsys.readouterr().err == (
        "mnist-backend: Invalid configuration: MNIST_MAX_UPLOAD_BYTES='lots': "
        "Input should be a valid integer, unable to parse string as an integer\n"
    )

"""Backpressure over HTTP: a full queue and a passed deadline answer 503 at once."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from .conftest import MakeClient

PREDICT_URL = "/api/v1/predict"
HANG_GUARD_SECONDS = 10.0
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


class HeldModel:
    """A predictor whose first batch waits until ``release()``: a busy model."""

    model_version = "held-model"

    def __init__(self) -> None:
        self.started = threading.Event()
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def predict_batch(self, tensors: np.ndarray) -> np.ndarray:
        self.started.set()
        self._gate.wait(HANG_GUARD_SECONDS)
        return np.full((len(tensors), 10), 0.1, dtype=np.float32)


class Background:
    """Requests sent from other threads, whose responses are collected."""

    def __init__(self, client: TestClient, upload: bytes) -> None:
        self._client = client
        self._upload = upload
        self._threads: list[threading.Thread] = []
        self.statuses: list[int] = []

    def post(self) -> None:
        def send() -> None:
            response = self._client.post(
                PREDICT_URL, files={"file": ("7.png", self._upload, "image/png")}
            )
            self.statuses.append(response.status_code)

        thread = threading.Thread(target=send)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(HANG_GUARD_SECONDS)


@pytest.fixture
def held_model() -> Iterator[HeldModel]:
    model = HeldModel()
    yield model
    model.release()


def _serve_held_model(client: TestClient, model: HeldModel) -> None:
    client.app.state.model_holder.activate(model)  # type: ignore[attr-defined]


def _wait_for_queue_depth(client: TestClient, depth: int) -> None:
    batcher = client.app.state.batcher  # type: ignore[attr-defined]
    give_up = time.monotonic() + HANG_GUARD_SECONDS
    while batcher.queue_depth != depth and time.monotonic() < give_up:
        time.sleep(0.005)


def _post(client: TestClient, upload: bytes) -> httpx.Response:
    return client.post(PREDICT_URL, files={"file": ("7.png", upload, "image/png")})


def test_full_queue_answers_503_overloaded_with_retry_after(
    make_client: MakeClient, held_model: HeldModel, seven_png: bytes
) -> None:
    client = make_client(max_queue_size=1)
    _serve_held_model(client, held_model)
    background = Background(client, seven_png)
    background.post()
    held_model.started.wait(HANG_GUARD_SECONDS)
    background.post()
    _wait_for_queue_depth(client, 1)

    response = _post(client, seven_png)

    held_model.release()
    background.join()
    body = response.json()
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert body == {
        "detail": "The inference queue is full (1 waiting); retry in 1 s.",
        "code": "overloaded",
        "request_id": response.headers["X-Request-ID"],
    }
    assert REQUEST_ID.fullmatch(body["request_id"])
    assert sorted(background.statuses) == [200, 200]


def test_request_queued_past_its_deadline_answers_503_deadline_exceeded(
    make_client: MakeClient, held_model: HeldModel, seven_png: bytes
) -> None:
    client = make_client(request_deadline_seconds=0.05)
    _serve_held_model(client, held_model)
    background = Background(client, seven_png)
    background.post()
    held_model.started.wait(HANG_GUARD_SECONDS)

    response = _post(client, seven_png)

    held_model.release()
    background.join()
    assert response.status_code == 503
    assert response.json() == {
        "detail": "The request waited 0.05 s for the model without reaching it.",
        "code": "deadline_exceeded",
        "request_id": response.headers["X-Request-ID"],
    }
    assert background.statuses == [200]

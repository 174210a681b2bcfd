"""Small uploads are decoded on the event loop, everything else on a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from mnist_backend.preprocessing import preprocess_upload

from .conftest import MakeClient, draw_seven, encode_image

PREDICT_URL = "/api/v1/predict"


@pytest.fixture
def decoded_on_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the functions the service hands to worker threads, by name."""
    names: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def recording_run_sync(function: Callable[[], Any], **options: Any) -> Any:
        target = getattr(function, "func", function)
        names.append(getattr(target, "__name__", repr(target)))
        return await run_sync(function, **options)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recording_run_sync)
    return names


def _post(client: Any, upload: bytes) -> int:
    response = client.post(PREDICT_URL, files={"file": ("7.png", upload, "image/png")})
    status: int = response.status_code
    return status


@pytest.mark.parametrize(
    ("size", "on_thread"),
    [
        pytest.param(100, False, id="small-image-on-the-loop"),
        pytest.param(200, True, id="over-the-pixel-cap-on-a-thread"),
    ],
)
def test_upload_is_decoded_on_a_thread_only_past_the_inline_caps(
    make_client: MakeClient, decoded_on_threads: list[str], size: int, on_thread: bool
) -> None:
    client = make_client(inline_decode_max_pixels=150 * 150)
    upload = encode_image(draw_seven(size))

    status = _post(client, upload)

    assert status == 200
    threaded = [name for name in decoded_on_threads if name == "preprocess_upload"]
    assert threaded == (["preprocess_upload"] if on_thread else [])


def test_upload_over_the_byte_cap_is_decoded_on_a_thread(
    make_client: MakeClient, decoded_on_threads: list[str], seven_png: bytes
) -> None:
    client = make_client(inline_decode_max_bytes=len(seven_png) - 1)

    status = _post(client, seven_png)

    assert status == 200
    assert decoded_on_threads.count(preprocess_upload.__name__) == 1


def test_image_over_the_real_pixel_limit_is_still_refused_with_413(
    make_client: MakeClient,
) -> None:
    client = make_client(max_image_pixels=100 * 100 - 1)
    upload = encode_image(draw_seven(100))

    response = client.post(PREDICT_URL, files={"file": ("7.png", upload, "image/png")})

    assert (response.status_code, response.json()["code"]) == (413, "image_too_large")

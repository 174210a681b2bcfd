from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from mnist_backend.artifacts import load_artifact
from mnist_backend.preprocessing import preprocess_upload

from .conftest import MakeClient, draw_seven, encode_image

PREDICT_URL = "/api/v1/predict"
ACCEPTED = "expected a PNG, JPEG, WEBP, BMP, GIF or TIFF image."


def _post_file(
    client: TestClient,
    upload: bytes,
    *,
    content_type: str = "image/png",
    query: str = "",
) -> tuple[int, dict[str, object], str]:
    response = client.post(
        PREDICT_URL + query, files={"file": ("digit.png", upload, content_type)}
    )
    return response.status_code, response.json(), response.headers["X-Request-ID"]


def _calibrated_probabilities(model_dir: Path, upload: bytes) -> np.ndarray:
    """Return softmax(logits / temperature) computed straight from the artifact."""
    loaded = load_artifact(model_dir)
    tensor = preprocess_upload(upload, max_pixels=10**9).tensor
    with torch.inference_mode():
        logits = loaded.model(torch.from_numpy(tensor[np.newaxis]))
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    temperature = card["calibration"]["temperature"]
    return torch.softmax(logits / temperature, dim=1)[0].numpy()


def test_predict_returns_calibrated_probabilities_of_the_served_model(
    client: TestClient, model_dir: Path, seven_png: bytes
) -> None:
    expected = _calibrated_probabilities(model_dir, seven_png)

    status, body, _ = _post_file(client, seven_png)

    processing_time_ms = body.pop("processing_time_ms")
    assert status == 200
    assert body == {
        "prediction": int(np.argmax(expected)),
        "confidence": pytest.approx(float(expected.max()), abs=1e-6),
        "probabilities": pytest.approx(expected.tolist(), abs=1e-6),
        "model_version": "20261203.120000-testtest",
    }
    assert isinstance(processing_time_ms, float)
    assert processing_time_ms > 0
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-5)  # type: ignore[arg-type]


def test_predict_with_top_k_ranks_the_most_probable_digits(
    client: TestClient, seven_png: bytes
) -> None:
    status, body, _ = _post_file(client, seven_png, query="?top_k=3")

    probabilities = body["probabilities"]
    assert isinstance(probabilities, list)
    ranked = sorted(range(10), key=lambda digit: -probabilities[digit])[:3]
    assert status == 200
    assert body["top_k"] == [
        {"digit": digit, "probability": probabilities[digit]} for digit in ranked
    ]
    assert ranked[0] == body["prediction"]


def test_predict_with_include_input_returns_the_28x28_image_the_model_saw(
    client: TestClient, seven_png: bytes
) -> None:
    expected_pixels = preprocess_upload(seven_png, max_pixels=10**9).pixels

    status, body, _ = _post_file(client, seven_png, query="?include_input=true")

    image = Image.open(io.BytesIO(base64.b64decode(str(body["input_image"]))))
    assert (status, image.format, image.size, image.mode) == (200, "PNG", (28, 28), "L")
    assert np.array_equal(np.asarray(image), expected_pixels)


def test_predict_without_options_omits_top_k_and_input_image(
    client: TestClient, seven_png: bytes
) -> None:
    status, body, _ = _post_file(client, seven_png)

    assert status == 200
    assert sorted(body) == [
        "confidence",
        "model_version",
        "prediction",
        "probabilities",
        "processing_time_ms",
    ]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        pytest.param(
            "?top_k=0", "Input should be greater than or equal to 1", id="zero"
        ),
        pytest.param(
            "?top_k=11", "Input should be less than or equal to 10", id="eleven"
        ),
        pytest.param(
            "?top_k=three",
            "Input should be a valid integer, unable to parse string as an integer",
            id="not-a-number",
        ),
    ],
)
def test_predict_rejects_top_k_outside_1_to_10_with_422(
    client: TestClient, seven_png: bytes, query: str, problem: str
) -> None:
    status, body, request_id = _post_file(client, seven_png, query=query)

    assert (status, body) == (
        422,
        {
            "detail": f"Invalid request: query 'top_k': {problem}",
            "code": "validation_error",
            "request_id": request_id,
        },
    )


@pytest.mark.parametrize(
    ("upload", "content_type", "named_kind"),
    [
        pytest.param(b"just some words\n", "text/plain", "text", id="text"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0L9 9"/></svg>',
            "image/svg+xml",
            "svg",
            id="svg",
        ),
        pytest.param(b"%PDF-1.7\n%binary", "application/pdf", "pdf", id="pdf"),
    ],
)
def test_predict_rejects_non_image_upload_with_415(
    client: TestClient, upload: bytes, content_type: str, named_kind: str
) -> None:
    status, body, request_id = _post_file(client, upload, content_type=content_type)

    detail = str(body.pop("detail"))
    assert (status, body) == (
        415,
        {"code": "unsupported_media_type", "request_id": request_id},
    )
    assert named_kind in detail.lower()
    assert detail.endswith(ACCEPTED)


@pytest.mark.parametrize(
    "upload",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, id="corrupt-header"),
        pytest.param(encode_image(draw_seven())[:300], id="truncated"),
    ],
)
def test_predict_rejects_broken_png_with_422(client: TestClient, upload: bytes) -> None:
    status, body, request_id = _post_file(client, upload)

    assert (status, body["code"], body["request_id"]) == (
        422,
        "undecodable_image",
        request_id,
    )


def test_predict_rejects_blank_canvas_with_422(
    client: TestClient, blank_png: bytes
) -> None:
    status, body, _ = _post_file(client, blank_png)

    assert (status, body["code"]) == (422, "no_digit_found")


def test_predict_rejects_image_over_the_pixel_limit_with_413(
    make_client: MakeClient, seven_png: bytes
) -> None:
    client = make_client(max_image_pixels=10_000)

    status, body, request_id = _post_file(client, seven_png)

    assert (status, body) == (
        413,
        {
            "detail": "The image is 200x200 = 40000 pixels; the limit is 10000 pixels.",
            "code": "image_too_large",
            "request_id": request_id,
        },
    )


def test_predict_rejects_empty_file_part_with_422(client: TestClient) -> None:
    status, body, request_id = _post_file(client, b"")

    assert (status, body) == (
        422,
        {
            "detail": "The uploaded file 'digit.png' is empty.",
            "code": "empty_upload",
            "request_id": request_id,
        },
    )


def test_predict_rejects_second_file_with_413(
    client: TestClient, seven_png: bytes
) -> None:
    files = [("file", ("a.png", seven_png)), ("file", ("b.png", seven_png))]

    response = client.post(PREDICT_URL, files=files)

    assert (response.status_code, response.json()["code"]) == (413, "too_many_files")

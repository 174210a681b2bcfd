"""Plain POST /api/v1/predict skips FastAPI's routing but not what wraps every route.

A query string sends the same request through FastAPI's route instead, so each test
compares the two paths or checks what the middlewares around the fast path add.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mnist_backend.api import fast_path

from .conftest import MakeClient

# A query string that changes nothing but takes FastAPI's route.
THROUGH_THE_ROUTE = "/api/v1/predict?include_input=false"


def _without_timing(body: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in body.items() if key != "processing_time_ms"}


def test_fast_path_answers_as_the_route_does(
    client: TestClient, seven_png: bytes
) -> None:
    upload = {"file": ("7.png", seven_png, "image/png")}

    fast = client.post("/api/v1/predict", files=upload)
    routed = client.post(THROUGH_THE_ROUTE, files=upload)

    assert (fast.status_code, routed.status_code) == (200, 200)
    assert _without_timing(fast.json()) == _without_timing(routed.json())
    assert fast.headers["content-type"] == routed.headers["content-type"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(b"not multipart", {"Content-Type": "text/plain"}, id="text"),
        pytest.param(
            b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--',
            {"Content-Type": "multipart/form-data; boundary=b"},
            id="wrong-field",
        ),
        pytest.param(
            b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx',
            {"Content-Type": "multipart/form-data; boundary=b"},
            id="unterminated",
        ),
        pytest.param(
            b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--b--',
            {"Content-Type": "multipart/form-data; boundary=b"},
            id="not-an-image",
        ),
    ],
)
def test_fast_path_errors_match_the_route(
    client: TestClient, content: bytes, headers: dict[str, str]
) -> None:
    fast = client.post("/api/v1/predict", content=content, headers=headers)
    routed = client.post(THROUGH_THE_ROUTE, content=content, headers=headers)

    fast_body, routed_body = fast.json(), routed.json()
    assert 400 <= fast.status_code < 500
    assert (fast.status_code, fast_body["code"], fast_body["detail"]) == (
        routed.status_code,
        routed_body["code"],
        routed_body["detail"],
    )
    assert fast_body["request_id"] == fast.headers["x-request-id"]


def test_fast_path_answers_carry_cors_headers(
    make_client: MakeClient, seven_png: bytes
) -> None:
    client = make_client(cors_origins=["https://digits.example"])

    response = client.post(
        "/api/v1/predict",
        files={"file": ("7.png", seven_png)},
        headers={"Origin": "https://digits.example"},
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://digits.example"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_unexpected_failure_on_the_fast_path_is_a_generic_500(
    client: TestClient, seven_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: object) -> None:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(fast_path, "predict_one", explode)

    response = client.post(
        "/api/v1/predict",
        files={"file": ("7.png", seven_png)},
        headers={"X-Request-ID": "fast-500"},
    )

    assert (response.status_code, response.json()) == (
        500,
        {
            "detail": "The server failed to handle this request.",
            "code": "internal_error",
            "request_id": "fast-500",
        },
    )

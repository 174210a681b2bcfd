"""Request ids, the shared error shape and the access log line."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient

from mnist_backend.errors import (
    DeadlineExceededError,
    ImageTooLargeError,
    InvalidUploadError,
    MnistBackendError,
    ModelUnavailableError,
    NoDigitFoundError,
    OverloadedError,
    UndecodableImageError,
    UnsupportedImageError,
    UploadTooLargeError,
)

from .conftest import MakeClient

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def test_response_echoes_a_well_formed_client_request_id(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "checkout-42.retry_1"})

    assert response.headers["X-Request-ID"] == "checkout-42.retry_1"


@pytest.mark.parametrize(
    "supplied",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("id with spaces", id="spaces"),
        pytest.param("id;drop", id="punctuation"),
    ],
)
def test_response_carries_a_generated_id_instead_of_a_missing_or_malformed_one(
    client: TestClient, supplied: str | None
) -> None:
    headers = {} if supplied is None else {"X-Request-ID": supplied}

    response = client.get("/health", headers=headers)

    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])


def test_error_body_carries_the_request_id(client: TestClient) -> None:
    response = client.get("/no/such/path", headers={"X-Request-ID": "trace-7"})

    assert (response.status_code, response.json()) == (
        404,
        {
            "detail": "No endpoint matches this path; see /docs for the API.",
            "code": "not_found",
            "request_id": "trace-7",
        },
    )


def test_unexpected_error_answers_generic_500_and_logs_traceback_once(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()

    def explode() -> None:
        raise RuntimeError("secret internal state")

    client.app.add_api_route("/explode", explode)  # type: ignore[attr-defined]

    response = client.get("/explode", headers={"X-Request-ID": "boom-1"})

    assert (response.status_code, response.json()) == (
        500,
        {
            "detail": "The server failed to handle this request.",
            "code": "internal_error",
            "request_id": "boom-1",
        },
    )
    assert "secret" not in response.text
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert [(record.getMessage(), record.request_id) for record in tracebacks] == [
        ("unhandled error", "boom-1")
    ]


def test_access_line_records_request_and_prediction(
    client: TestClient, seven_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mnist_backend.access")

    response = client.post(
        "/api/v1/predict",
        files={"file": ("7.png", seven_png)},
        headers={"X-Request-ID": "access-1"},
    )

    body = response.json()
    access = [
        record for record in caplog.records if record.name == "mnist_backend.access"
    ]
    assert len(access) == 1
    record = access[0]
    assert (
        record.request_id,
        record.method,
        record.path,
        record.status,
        record.digit,
        record.confidence,
    ) == (
        "access-1",
        "POST",
        "/api/v1/predict",
        200,
        body["prediction"],
        body["confidence"],
    )
    assert isinstance(record.latency_ms, float)


def test_cors_allows_configured_origin_only(make_client: MakeClient) -> None:
    client = make_client(cors_origins=["https://digits.example"])
    preflight = {"Access-Control-Request-Method": "POST"}

    allowed = client.options(
        "/api/v1/predict", headers={"Origin": "https://digits.example", **preflight}
    )
    refused = client.options(
        "/api/v1/predict", headers={"Origin": "https://evil.example", **preflight}
    )

    assert (allowed.status_code, allowed.headers["access-control-allow-origin"]) == (
        200,
        "https://digits.example",
    )
    assert (refused.status_code, "access-control-allow-origin" in refused.headers) == (
        400,
        False,
    )


def test_json_log_format_writes_one_object_per_line_with_request_id(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(log_format="json")
    capsys.readouterr()

    client.get("/health", headers={"X-Request-ID": "json-1"})

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    access = [line for line in lines if line["logger"] == "mnist_backend.access"]
    assert len(access) == 1
    latency_ms = access[0].pop("latency_ms")
    timestamp = access[0].pop("timestamp")
    assert access[0] == {
        "level": "INFO",
        "logger": "mnist_backend.access",
        "message": "request",
        "request_id": "json-1",
        "method": "GET",
        "path": "/health",
        "status": 200,
    }
    assert isinstance(latency_ms, float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", timestamp)


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        pytest.param(UnsupportedImageError("x"), 415, None, id="unsupported"),
        pytest.param(ImageTooLargeError("x"), 413, None, id="image-too-large"),
        pytest.param(UploadTooLargeError("x"), 413, None, id="upload-too-large"),
        pytest.param(UndecodableImageError("x"), 422, None, id="undecodable"),
        pytest.param(NoDigitFoundError("x"), 422, None, id="no-digit"),
        pytest.param(InvalidUploadError("x"), 422, None, id="other-invalid-upload"),
        pytest.param(ModelUnavailableError("x"), 503, None, id="model-unavailable"),
        pytest.param(
            OverloadedError("x", retry_after_seconds=3), 503, "3", id="overloaded"
        ),
        pytest.param(DeadlineExceededError("x"), 503, None, id="deadline"),
    ],
)
def test_domain_errors_map_to_their_status_and_code(
    make_client: MakeClient,
    error: MnistBackendError,
    status: int,
    retry_after: str | None,
) -> None:
    client = make_client()

    def fail() -> None:
        raise error

    client.app.add_api_route("/fail", fail)  # type: ignore[attr-defined]

    response = client.get("/fail", headers={"X-Request-ID": "map-1"})

    assert (response.status_code, response.headers.get("Retry-After")) == (
        status,
        retry_after,
    )
    assert response.json() == {"detail": "x", "code": error.code, "request_id": "map-1"}

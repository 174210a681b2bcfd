"""How the predict endpoints treat the request body itself, before any image work."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.types import Message

from mnist_backend.api.uploads import read_upload_files
from mnist_backend.errors import UploadTooLargeError

from .conftest import MakeClient

PREDICT_URL = "/api/v1/predict"
BOUNDARY = "digitboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _multipart(field_name: str, upload: bytes, *, closed: bool = True) -> bytes:
    body = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field_name}"; filename="d.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + upload
    return body + (f"\r\n--{BOUNDARY}--\r\n".encode() if closed else b"")


def _error(
    response_status: int, detail: str, code: str, request_id: str
) -> tuple[int, dict[str, str]]:
    return response_status, {"detail": detail, "code": code, "request_id": request_id}


def test_predict_rejects_body_over_upload_limit_with_413(
    make_client: MakeClient,
) -> None:
    client = make_client(max_upload_bytes=4096)

    response = client.post(PREDICT_URL, files={"file": ("d.png", b"\x89PNG" * 2000)})

    assert (response.status_code, response.json()) == _error(
        413,
        "The request body exceeds the upload limit of 4096 bytes.",
        "upload_too_large",
        response.headers["X-Request-ID"],
    )


def test_predict_rejects_chunked_body_over_upload_limit_with_413(
    make_client: MakeClient,
) -> None:
    client = make_client(max_upload_bytes=4096)
    body = _multipart("file", b"\x89PNG" * 2000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = client.post(
        PREDICT_URL, content=chunks(), headers={"Content-Type": MULTIPART}
    )

    assert "content-length" not in response.request.headers
    assert (response.status_code, response.json()["code"]) == (413, "upload_too_large")


def test_upload_reader_stops_reading_once_the_limit_is_passed() -> None:
    chunks = [_multipart("file", b"", closed=False)] + [b"x" * 1000] * 100
    sent: list[bytes] = []

    async def receive() -> Message:
        sent.append(chunks[len(sent)])
        return {"type": "http.request", "body": sent[-1], "more_body": len(sent) < 101}

    scope = {
        "type": "http",
        "method": "POST",
        "path": PREDICT_URL,
        "headers": [(b"content-type", MULTIPART.encode())],
    }
    request = Request(scope, receive)

    async def read() -> None:
        await read_upload_files(request, field_name="file", max_bytes=4500, max_files=1)

    with pytest.raises(UploadTooLargeError):
        anyio.run(read)
    assert len(sent) == 6


@pytest.mark.parametrize(
    ("content", "headers", "detail", "code"),
    [
        pytest.param(
            b"",
            {"Content-Type": MULTIPART},
            "The request body is empty; expected a file in multipart field 'file'.",
            "empty_upload",
            id="empty-body",
        ),
        pytest.param(
            b"",
            {},
            "The request body is empty; expected a file in multipart field 'file'.",
            "empty_upload",
            id="empty-body-without-content-type",
        ),
        pytest.param(
            b'{"image": "..."}',
            {"Content-Type": "application/json"},
            "Expected a multipart/form-data body with a boundary; "
            "got content type 'application/json'.",
            "not_multipart",
            id="json-body",
        ),
        pytest.param(
            b"--x\r\n",
            {"Content-Type": "multipart/form-data"},
            "Expected a multipart/form-data body with a boundary; "
            "got content type 'multipart/form-data'.",
            "not_multipart",
            id="multipart-without-boundary",
        ),
        pytest.param(
            _multipart("file", b"\x89PNG", closed=False),
            {"Content-Type": MULTIPART},
            "The multipart/form-data body ends before its closing boundary.",
            "not_multipart",
            id="unterminated-multipart",
        ),
        pytest.param(
            _multipart("image", b"\x89PNG"),
            {"Content-Type": MULTIPART},
            "Expected a file in multipart field 'file'; got fields 'image'.",
            "missing_file",
            id="misnamed-field",
        ),
        pytest.param(
            f"--{BOUNDARY}--\r\n".encode(),
            {"Content-Type": MULTIPART},
            "Expected a file in multipart field 'file'; the body has no parts.",
            "missing_file",
            id="no-parts",
        ),
    ],
)
def test_predict_rejects_unusable_body_with_422(
    client: TestClient, content: bytes, headers: dict[str, str], detail: str, code: str
) -> None:
    response = client.post(PREDICT_URL, content=content, headers=headers)

    assert (response.status_code, response.json()) == _error(
        422, detail, code, response.headers["X-Request-ID"]
    )


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_predict_rejects_other_methods_with_405(
    client: TestClient, method: str
) -> None:
    response = client.request(method, PREDICT_URL)

    assert (response.status_code, response.headers["Allow"], response.json()) == (
        405,
        "POST",
        {
            "detail": f"Method {method} is not allowed here; allowed: POST.",
            "code": "method_not_allowed",
            "request_id": response.headers["X-Request-ID"],
        },
    )

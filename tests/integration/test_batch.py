from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import MakeClient

BATCH_URL = "/api/v1/predict/batch"


def test_batch_answers_each_file_in_order_with_a_bad_file_in_the_middle(
    client: TestClient, seven_png: bytes
) -> None:
    single = client.post("/api/v1/predict", files={"file": ("7.png", seven_png)}).json()
    files = [
        ("files", ("first.png", seven_png, "image/png")),
        ("files", ("notes.txt", b"not an image", "text/plain")),
        ("files", ("third.png", seven_png, "image/png")),
    ]

    response = client.post(BATCH_URL, files=files)

    body = response.json()
    assert response.status_code == 200
    assert (body["succeeded"], body["failed"], body["model_version"]) == (
        2,
        1,
        "20261203.120000-testtest",
    )
    # A batch of three may round differently from a batch of one in the last bits.
    expected_result = {
        "prediction": single["prediction"],
        "confidence": pytest.approx(single["confidence"], abs=1e-6),
        "probabilities": pytest.approx(single["probabilities"], abs=1e-6),
    }
    results = body["results"]
    notes_error = results[1]["error"]
    assert results == [
        {
            "index": 0,
            "filename": "first.png",
            "status": "ok",
            "result": expected_result,
        },
        {"index": 1, "filename": "notes.txt", "status": "error", "error": notes_error},
        {
            "index": 2,
            "filename": "third.png",
            "status": "ok",
            "result": expected_result,
        },
    ]
    assert (notes_error["code"], notes_error["status"]) == (
        "unsupported_media_type",
        415,
    )


def test_batch_reports_empty_file_as_its_own_error(
    client: TestClient, seven_png: bytes
) -> None:
    files = [("files", ("empty.png", b"")), ("files", ("seven.png", seven_png))]

    response = client.post(BATCH_URL, files=files)

    results = response.json()["results"]
    assert (response.status_code, results[0], results[1]["status"]) == (
        200,
        {
            "index": 0,
            "filename": "empty.png",
            "status": "error",
            "error": {
                "detail": "The uploaded file 'empty.png' is empty.",
                "code": "empty_upload",
                "status": 422,
            },
        },
        "ok",
    )


def test_batch_passes_top_k_to_every_result(
    client: TestClient, seven_png: bytes
) -> None:
    files = [("files", ("a.png", seven_png)), ("files", ("b.png", seven_png))]

    response = client.post(BATCH_URL + "?top_k=2", files=files)

    assert [len(item["result"]["top_k"]) for item in response.json()["results"]] == [
        2,
        2,
    ]


@pytest.mark.parametrize(
    ("file_count", "status", "code"),
    [
        pytest.param(3, 200, None, id="at-limit"),
        pytest.param(4, 413, "too_many_files", id="over-limit"),
    ],
)
def test_batch_rejects_more_files_than_the_batch_limit_with_413(
    make_client: MakeClient,
    seven_png: bytes,
    file_count: int,
    status: int,
    code: str | None,
) -> None:
    client = make_client(max_batch_files=3)
    files = [("files", (f"{index}.png", seven_png)) for index in range(file_count)]

    response = client.post(BATCH_URL, files=files)

    assert (response.status_code, response.json().get("code")) == (status, code)


def test_batch_rejects_files_under_the_single_file_field_with_422(
    client: TestClient, seven_png: bytes
) -> None:
    response = client.post(BATCH_URL, files={"file": ("a.png", seven_png)})

    assert (response.status_code, response.json()) == (
        422,
        {
            "detail": "Expected a file in multipart field 'files'; got fields 'file'.",
            "code": "missing_file",
            "request_id": response.headers["X-Request-ID"],
        },
    )

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from mnist_backend import __version__


def test_info_describes_service_model_runtime_contract_and_limits(
    client: TestClient, model_dir: Path
) -> None:
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))

    response = client.get("/api/info")

    body = response.json()
    assert response.status_code == 200
    assert body == {
        "service": {"name": "mnist-backend", "version": __version__},
        "ready": True,
        "model": {
            "model_version": "20261203.120000-testtest",
            "sha256": card["artifact"]["sha256"],
            "card": card,
        },
        "worker_pid": os.getpid(),
        "last_reload": None,
        "runtime": {
            "backend": "torch",
            "precision": "fp32",
            "device": "cpu",
            "torch_version": torch.__version__,
            "python_version": body["runtime"]["python_version"],
            "intra_op_threads": 1,
        },
        "input_contract": {
            "input_shape": [1, 28, 28],
            "polarity": "white digit on black background",
            "digit_box_size": 20,
            "centring": "centre of mass at the frame centre",
            "normalization": {"mean": 0.1307, "std": 0.3081},
            "accepted_formats": ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"],
        },
        "limits": {
            "max_upload_bytes": 10 * 1024 * 1024,
            "max_image_pixels": 40_000_000,
            "max_batch_files": 64,
        },
    }


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_documentation_pages_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert (response.status_code, response.headers["content-type"]) == (
        200,
        "text/html; charset=utf-8",
    )


@pytest.mark.parametrize(
    ("path", "field_schema"),
    [
        pytest.param(
            "/api/v1/predict", {"type": "string", "format": "binary"}, id="single"
        ),
        pytest.param(
            "/api/v1/predict/batch",
            {"type": "array", "items": {"type": "string", "format": "binary"}},
            id="batch",
        ),
    ],
)
def test_openapi_documents_the_multipart_file_field(
    client: TestClient, path: str, field_schema: dict[str, object]
) -> None:
    field_name = "files" if path.endswith("batch") else "file"

    operation = client.get("/openapi.json").json()["paths"][path]["post"]

    assert operation["requestBody"] == {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [field_name],
                    "properties": {field_name: field_schema},
                }
            }
        },
    }


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        pytest.param(
            "/api/v1/predict", "post", ["413", "415", "422", "503"], id="predict"
        ),
        pytest.param(
            "/api/v1/predict/batch", "post", ["413", "415", "422", "503"], id="batch"
        ),
        pytest.param("/ready", "get", ["503"], id="ready"),
    ],
)
def test_openapi_documents_error_responses_with_examples(
    client: TestClient, path: str, method: str, statuses: list[str]
) -> None:
    operation = client.get("/openapi.json").json()["paths"][path][method]

    error_responses = {
        status: response
        for status, response in operation["responses"].items()
        if status != "200"
    }
    assert sorted(error_responses) == statuses
    for response in error_responses.values():
        content = response["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
        example_bodies = [example["value"] for example in content["examples"].values()]
        assert example_bodies
        assert all(
            sorted(body) == ["code", "detail", "request_id"] for body in example_bodies
        )

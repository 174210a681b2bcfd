from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from .conftest import MakeClient

WriteModelDir = Callable[..., Path]


class _RunsShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (os.system, (f"touch {self.marker}",))


def test_health_answers_200(client: TestClient) -> None:
    response = client.get("/health")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready_answers_200_with_the_model_version(client: TestClient) -> None:
    response = client.get("/ready")

    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "model_version": "20261203.120000-testtest"},
    )


def _mismatched_checksum(write: WriteModelDir, tmp_path: Path) -> Path:
    return write(card_changes={"artifact": {"sha256": "0" * 64}})


def _missing_artifact(write: WriteModelDir, tmp_path: Path) -> Path:
    model_dir = write()
    (model_dir / "convnet.pt").unlink()
    return model_dir


def _code_pickle(write: WriteModelDir, tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    torch.save({"weight": _RunsShellCommand(tmp_path / "payload-ran")}, buffer)
    return write(payload=buffer.getvalue())


def _foreign_architecture(write: WriteModelDir, tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    torch.save({"linear.weight": torch.zeros(10, 784)}, buffer)
    return write(payload=buffer.getvalue())


@pytest.mark.parametrize(
    ("break_artifact", "code"),
    [
        pytest.param(_mismatched_checksum, "artifact_checksum_mismatch", id="checksum"),
        pytest.param(_missing_artifact, "artifact_missing", id="missing"),
        pytest.param(_code_pickle, "artifact_unsafe", id="code-pickle"),
        pytest.param(_foreign_architecture, "architecture_mismatch", id="architecture"),
    ],
)
def test_broken_artifact_keeps_service_alive_but_never_serves(
    make_client: MakeClient,
    write_model_dir: WriteModelDir,
    tmp_path: Path,
    seven_png: bytes,
    break_artifact: Callable[[WriteModelDir, Path], Path],
    code: str,
) -> None:
    client = make_client(model_dir=break_artifact(write_model_dir, tmp_path))

    health = client.get("/health")
    ready = client.get("/ready")
    predict = client.post("/api/v1/predict", files={"file": ("7.png", seven_png)})

    assert health.status_code == 200
    assert (ready.status_code, ready.json()["code"]) == (503, code)
    assert (predict.status_code, predict.json()["code"]) == (503, "model_unavailable")
    assert predict.json()["detail"] == (
        f"No validated model is loaded: {ready.json()['detail']}"
    )
    assert not (tmp_path / "payload-ran").exists()


def test_ready_explains_a_checksum_mismatch(
    make_client: MakeClient, write_model_dir: WriteModelDir
) -> None:
    model_dir = write_model_dir(card_changes={"artifact": {"sha256": "0" * 64}})
    client = make_client(model_dir=model_dir)

    response = client.get("/ready")

    body = response.json()
    assert (response.status_code, body["code"], body["request_id"]) == (
        503,
        "artifact_checksum_mismatch",
        response.headers["X-Request-ID"],
    )
    assert body["detail"].startswith("Model artifact convnet.pt has SHA-256 ")
    assert body["detail"].endswith(f"but its model card records {'0' * 64}.")


def test_info_reports_no_model_while_the_artifact_is_refused(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(model_dir=tmp_path / "nowhere")

    response = client.get("/api/info")

    assert (
        response.status_code,
        response.json()["ready"],
        response.json()["model"],
    ) == (
        200,
        False,
        None,
    )

"""Which runtime the service runs, how it says so, and serving without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import onnxruntime
import pytest
from fastapi.testclient import TestClient

from .conftest import PUBLISHED_MODEL_DIR, REPO_ROOT, MakeClient


def test_info_names_onnx_runtime_for_the_published_model(
    make_client: MakeClient,
) -> None:
    client = make_client(model_dir=PUBLISHED_MODEL_DIR)
    card = json.loads((PUBLISHED_MODEL_DIR / "model_card.json").read_text("utf-8"))

    body = client.get("/api/info").json()

    assert body["runtime"] == {
        "backend": "onnx",
        "precision": "int8",
        "device": "cpu",
        "onnxruntime_version": onnxruntime.__version__,
        "python_version": body["runtime"]["python_version"],
        "intra_op_threads": 1,
    }
    assert body["model"]["sha256"] == card["onnx_int8"]["sha256"]


@pytest.mark.parametrize(
    ("precision", "card_key"),
    [
        pytest.param("fp32", "onnx", id="fp32"),
        pytest.param("int8", "onnx_int8", id="int8"),
    ],
)
def test_onnx_precision_setting_picks_the_served_artifact(
    make_client: MakeClient, precision: str, card_key: str
) -> None:
    client = make_client(model_dir=PUBLISHED_MODEL_DIR, onnx_precision=precision)
    card = json.loads((PUBLISHED_MODEL_DIR / "model_card.json").read_text("utf-8"))

    body = client.get("/api/info").json()

    assert (body["runtime"]["precision"], body["model"]["sha256"]) == (
        precision,
        card[card_key]["sha256"],
    )


@pytest.fixture
def model_dir_without_int8_file(tmp_path: Path) -> Path:
    """The published model folder with its int8 file gone but still in the card."""
    model_dir = tmp_path / "published-without-int8"
    shutil.copytree(PUBLISHED_MODEL_DIR, model_dir)
    (model_dir / "convnet.int8.onnx").unlink()
    return model_dir


def test_auto_without_the_int8_file_serves_the_fp32_export(
    make_client: MakeClient, model_dir_without_int8_file: Path
) -> None:
    client = make_client(model_dir=model_dir_without_int8_file)
    card = json.loads((PUBLISHED_MODEL_DIR / "model_card.json").read_text("utf-8"))

    body = client.get("/api/info").json()

    assert (body["ready"], body["runtime"]["backend"]) == (True, "onnx")
    assert (body["runtime"]["precision"], body["model"]["sha256"]) == (
        "fp32",
        card["onnx"]["sha256"],
    )


@pytest.fixture
def model_dir_without_onnx_file(tmp_path: Path) -> Path:
    """The published model folder with both ONNX files gone but still in the card."""
    model_dir = tmp_path / "published-without-onnx"
    shutil.copytree(PUBLISHED_MODEL_DIR, model_dir)
    (model_dir / "convnet.onnx").unlink()
    (model_dir / "convnet.int8.onnx").unlink()
    return model_dir


def test_forced_onnx_without_its_file_is_unavailable_with_the_reason(
    make_client: MakeClient, model_dir_without_onnx_file: Path, seven_png: bytes
) -> None:
    client = make_client(model_dir=model_dir_without_onnx_file, runtime="onnx")
    missing = model_dir_without_onnx_file.resolve() / "convnet.onnx"

    ready = client.get("/ready")
    predict = client.post(
        "/api/v1/predict", files={"file": ("7.png", seven_png, "image/png")}
    )

    assert (ready.status_code, predict.status_code) == (503, 503)
    assert (ready.json()["code"], ready.json()["detail"]) == (
        "artifact_missing",
        f"ONNX artifact {missing} does not exist.",
    )
    assert (predict.json()["code"], predict.json()["detail"]) == (
        "model_unavailable",
        f"No validated model is loaded: ONNX artifact {missing} does not exist.",
    )


def test_auto_without_the_onnx_file_serves_torch(
    make_client: MakeClient, model_dir_without_onnx_file: Path
) -> None:
    client = make_client(model_dir=model_dir_without_onnx_file)

    body = client.get("/api/info").json()

    assert (body["ready"], body["runtime"]["backend"]) == (True, "torch")
    assert body["runtime"]["precision"] == "fp32"


# Runs in a fresh interpreter where ``import torch`` fails, as on an install
# without the [torch] extra.
_WITHOUT_TORCH = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None

    from fastapi.testclient import TestClient
    from mnist_backend.api.main import create_app
    from mnist_backend.config import Settings

    settings = Settings(model_dir=sys.argv[1], runtime="onnx", log_format="text")
    with TestClient(create_app(settings)) as client:
        info = client.get("/api/info").json()
        with open(sys.argv[2], "rb") as upload:
            files = {"file": ("7.png", upload.read(), "image/png")}
        prediction = client.post("/api/v1/predict", files=files)
    print(json.dumps({
        "backend": info["runtime"]["backend"],
        "precision": info["runtime"]["precision"],
        "status": prediction.status_code,
        "prediction": prediction.json().get("prediction"),
        "torch_loaded": sys.modules.get("torch") is not None,
    }))
    """
)


def test_service_imports_and_predicts_with_onnx_without_torch(
    tmp_path: Path, seven_png: bytes
) -> None:
    upload = tmp_path / "7.png"
    upload.write_bytes(seven_png)

    finished = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(PUBLISHED_MODEL_DIR), str(upload)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout.splitlines()[-1]) == {
        "backend": "onnx",
        "precision": "int8",
        "status": 200,
        "prediction": 7,
        "torch_loaded": False,
    }


def test_info_reports_no_runtime_while_no_model_is_loaded(
    make_client: MakeClient, model_dir_without_onnx_file: Path
) -> None:
    client: TestClient = make_client(
        model_dir=model_dir_without_onnx_file, runtime="onnx", inference_threads=2
    )

    body = client.get("/api/info").json()

    assert (body["ready"], body["runtime"]) == (
        False,
        {
            "backend": "none",
            "device": "cpu",
            "python_version": body["runtime"]["python_version"],
            "intra_op_threads": 2,
        },
    )

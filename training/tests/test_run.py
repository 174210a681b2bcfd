"""End to end: ``kedro run --env test`` on a copy of the project publishes a model
that the service's loading rules accept."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_backend.models.convnet import ConvNet

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """Run the whole default pipeline once on a copy of the project; return the
    folder it published into (never the committed models/)."""
    workspace = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, workspace / name)
    skip = shutil.ignore_patterns("local", "__pycache__", "*.egg-info")
    shutil.copytree(PROJECT / "src", workspace / "src", ignore=skip)
    shutil.copytree(PROJECT / "conf", workspace / "conf", ignore=skip)
    (workspace / "conf" / "local").mkdir()
    shutil.copytree(PROJECT / "data" / "01_raw", workspace / "data" / "01_raw")
    model_dir = workspace / "published"
    environment = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--env",
            "test",
            "--params",
            f"publish.model_dir={model_dir}",
        ],
        cwd=workspace,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert completed.returncode == 0, (
        completed.stdout[-3000:] + completed.stderr[-3000:]
    )
    return model_dir


def test_run_publishes_a_state_dict_that_loads_into_the_convnet(published):
    state = torch.load(published / "convnet.pt", weights_only=True)

    model = ConvNet()
    model.load_state_dict(state)


def test_run_publishes_a_complete_card_that_matches_the_artifacts(published):
    card = json.loads((published / "model_card.json").read_text())

    pt_digest = hashlib.sha256((published / "convnet.pt").read_bytes()).hexdigest()
    onnx_digest = hashlib.sha256((published / "convnet.onnx").read_bytes()).hexdigest()
    int8_bytes = (published / "convnet.int8.onnx").read_bytes()
    assert card["artifact"]["sha256"] == pt_digest
    assert card["onnx"]["sha256"] == onnx_digest
    assert (card["onnx_int8"]["sha256"], card["onnx_int8"]["bytes"]) == (
        hashlib.sha256(int8_bytes).hexdigest(),
        len(int8_bytes),
    )
    assert card["metrics"]["test_size"] == 1000
    assert 0.0 < card["metrics"]["test_accuracy"] <= 1.0
    assert len(card["metrics"]["per_class_accuracy"]) == 10
    assert card["calibration"]["temperature"] > 0
    assert card["training"]["epochs_completed"] == 1
    assert set(card["dataset"]["files"]) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert card["library_versions"]["torch"] == torch.__version__


def test_run_publishes_an_int8_model_that_passed_the_test_gate(published):
    int8 = json.loads((published / "model_card.json").read_text())["onnx_int8"]

    metrics, gate = int8["metrics"], int8["gate"]
    accuracy_drop = metrics["fp32_test_accuracy"] - metrics["int8_test_accuracy"]
    assert (int8["file"], metrics["test_size"]) == ("convnet.int8.onnx", 1000)
    assert (gate["max_accuracy_drop"], gate["min_argmax_agreement"]) == (0.01, 0.98)
    assert accuracy_drop <= gate["max_accuracy_drop"]
    assert metrics["argmax_agreement_with_torch"] >= gate["min_argmax_agreement"]
    assert int8["quantisation"]["calibration_size"] == 500


def test_run_leaves_no_temporary_files_in_the_model_folder(published):
    assert sorted(p.name for p in published.iterdir()) == [
        "convnet.int8.onnx",
        "convnet.onnx",
        "convnet.pt",
        "model_card.json",
    ]

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pytest
import torch

from mnist_backend.models.convnet import ConvNet
from mnist_training.pipelines.publish import nodes
from mnist_training.pipelines.publish.nodes import (
    build_model_card,
    collect_provenance,
    export_onnx,
    publish_model,
    serialise_state_dict,
    write_atomically,
)

CARD_KEYS = {
    "schema_version",
    "model_version",
    "architecture",
    "artifact",
    "onnx",
    "onnx_int8",
    "calibration",
    "metrics",
    "preprocessing",
    "dataset",
    "training",
    "created_at",
    "git_commit",
    "library_versions",
    "python",
}


@pytest.fixture
def model_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ConvNet().state_dict()


@pytest.fixture
def int8_report() -> dict[str, object]:
    return {
        "quantisation": {"format": "QDQ", "calibration_size": 20},
        "metrics": {"int8_test_accuracy": 0.99, "argmax_agreement_with_torch": 1.0},
        "gate": {"max_accuracy_drop": 0.002, "min_argmax_agreement": 0.998},
    }


@pytest.fixture
def metrics() -> dict[str, object]:
    return {
        "test_accuracy": 0.99,
        "validation_accuracy": 0.98,
        "per_class_accuracy": [0.99] * 10,
        "confusion_matrix": [[0] * 10] * 10,
        "ece_before": 0.02,
        "ece_after": 0.005,
        "temperature": 1.3,
        "test_size": 50,
    }


def test_serialised_state_dict_loads_with_weights_only(model_state):
    artifact = serialise_state_dict(model_state)

    loaded = torch.load(io.BytesIO(artifact), weights_only=True)

    assert set(loaded) == set(model_state)
    for name, tensor in model_state.items():
        torch.testing.assert_close(loaded[name], tensor)


def test_export_onnx_matches_torch_on_the_given_digits(model_state, tiny_test):
    import onnxruntime

    onnx_bytes = export_onnx(model_state, tiny_test, tolerance=1e-3)

    session = onnxruntime.InferenceSession(
        onnx_bytes, providers=["CPUExecutionProvider"]
    )
    batch = np.zeros((5, 1, 28, 28), np.float32)
    assert session.run(None, {"input": batch})[0].shape == (5, 10)


def test_export_onnx_refuses_an_export_outside_the_tolerance(model_state, tiny_test):
    with pytest.raises(ValueError, match="ONNX export differs from the torch model"):
        export_onnx(model_state, tiny_test, tolerance=-1.0)


def test_model_card_describes_the_artifact_it_names(model_state, metrics, int8_report):
    artifact = serialise_state_dict(model_state)
    provenance = collect_provenance()

    card = build_model_card(
        artifact,
        b"onnx bytes",
        b"int8 bytes",
        int8_report,
        metrics,
        [{"epoch": 1, "seconds": 2.0}],
        {"train-images-idx3-ubyte.gz": "ab" * 32},
        {"validation_size": 500, "max_train_size": None, "seed": 42},
        {"epochs": 1},
        provenance,
    )

    assert set(card) == CARD_KEYS
    assert card["artifact"]["sha256"] == hashlib.sha256(artifact).hexdigest()
    assert card["onnx"]["sha256"] == hashlib.sha256(b"onnx bytes").hexdigest()
    assert card["onnx_int8"] == {
        "file": "convnet.int8.onnx",
        "sha256": hashlib.sha256(b"int8 bytes").hexdigest(),
        "bytes": len(b"int8 bytes"),
        "quantised_from_sha256": hashlib.sha256(b"onnx bytes").hexdigest(),
        **int8_report,
    }
    assert card["model_version"].endswith(card["artifact"]["sha256"][:8])
    assert card["calibration"]["temperature"] == 1.3
    assert card["preprocessing"]["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert card["architecture"]["parameters"] == sum(
        t.numel() for t in ConvNet().parameters()
    )
    json.dumps(card)  # the card must be plain JSON


def test_publish_writes_artifacts_and_card_readable_by_others(tmp_path):
    card = {"model_version": "v2"}

    published = publish_model(
        b"weights", b"onnx", b"int8", card, str(tmp_path / "models")
    )

    folder = tmp_path / "models"
    assert published["files"] == [
        "convnet.pt",
        "convnet.onnx",
        "convnet.int8.onnx",
        "model_card.json",
    ]
    assert (folder / "convnet.pt").read_bytes() == b"weights"
    assert (folder / "convnet.int8.onnx").read_bytes() == b"int8"
    assert json.loads((folder / "model_card.json").read_text()) == card
    assert (folder / "convnet.pt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in folder.iterdir()) == sorted(published["files"])


def test_publish_interrupted_before_the_card_keeps_the_old_card_and_no_partial_file(
    tmp_path, monkeypatch
):
    folder = tmp_path / "models"
    publish_model(
        b"old weights", b"old onnx", b"old int8", {"model_version": "v1"}, str(folder)
    )
    real_replace = os.replace

    def replace_until_the_card(source, destination):
        if str(destination).endswith("model_card.json"):
            raise KeyboardInterrupt
        real_replace(source, destination)

    monkeypatch.setattr(nodes.os, "replace", replace_until_the_card)

    with pytest.raises(KeyboardInterrupt):
        publish_model(
            b"new weights",
            b"new onnx",
            b"new int8",
            {"model_version": "v2"},
            str(folder),
        )

    assert json.loads((folder / "model_card.json").read_text()) == {
        "model_version": "v1"
    }
    assert sorted(p.name for p in folder.iterdir()) == [
        "convnet.int8.onnx",
        "convnet.onnx",
        "convnet.pt",
        "model_card.json",
    ]


def test_write_atomically_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "convnet.pt"
    target.write_bytes(b"old")

    def failing_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(nodes.os, "fsync", failing_fsync)

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new")

    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["convnet.pt"]

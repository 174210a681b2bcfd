"""Fixtures for validating the published model: the artifact and the MNIST test set.

These tests need the real artifact in ``models/`` at the repository root; a missing
artifact fails them rather than skipping, so an unvalidated model never passes.
``MNIST_VALIDATION_MODEL_DIR`` points them at a candidate artifact elsewhere.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_backend.contract import MODEL_CARD_FILENAME, MODEL_FILENAME
from mnist_backend.models.convnet import ConvNet

REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO_ROOT / "training" / "data" / "01_raw" / "mnist"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


@dataclass(frozen=True)
class PublishedModel:
    """The artifact's network in eval mode and the temperature its card records."""

    network: ConvNet
    temperature: float

    def predict_probabilities(self, tensors: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities (N, 10) for tensors (N, 1, 28, 28)."""
        with torch.no_grad():
            logits = self.network(torch.from_numpy(tensors))
            probabilities = torch.softmax(logits / self.temperature, dim=1)
        return probabilities.numpy()


@dataclass(frozen=True)
class DigitSet:
    images: np.ndarray  # (N, 28, 28) uint8, white on black
    labels: np.ndarray  # (N,) uint8


Classify = Callable[[np.ndarray], np.ndarray]


def _model_dir() -> Path:
    return Path(os.environ.get("MNIST_VALIDATION_MODEL_DIR", REPO_ROOT / "models"))


@pytest.fixture(scope="session")
def published_model() -> PublishedModel:
    """The published ConvNet, loaded once for the whole session."""
    model_dir = _model_dir()
    artifact = model_dir / MODEL_FILENAME
    card_path = model_dir / MODEL_CARD_FILENAME
    if not artifact.is_file() or not card_path.is_file():
        pytest.fail(
            f"No published model to validate: expected {artifact} and its card."
        )

    network = ConvNet()
    network.load_state_dict(torch.load(artifact, weights_only=True))
    network.eval()
    card = json.loads(card_path.read_text(encoding="utf-8"))
    return PublishedModel(
        network=network, temperature=card["calibration"]["temperature"]
    )


@pytest.fixture(scope="session")
def mnist_test_set() -> DigitSet:
    """The 10,000 MNIST test digits and their labels, read from the IDX files."""
    images = _read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC, 3)
    labels = _read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", LABELS_MAGIC, 1)
    return DigitSet(images=images, labels=labels)


@pytest.fixture(scope="session")
def classify(published_model: PublishedModel) -> Classify:
    """Return a function giving the predicted digit for tensors (N, 1, 28, 28)."""

    def predict(tensors: np.ndarray) -> np.ndarray:
        predictions = [
            published_model.predict_probabilities(tensors[start : start + 1000])
            for start in range(0, len(tensors), 1000)
        ]
        return np.concatenate(predictions).argmax(axis=1)

    return predict


def _read_idx(path: Path, magic: int, dimensions: int) -> np.ndarray:
    """Return the array stored in a gzipped IDX file, after checking its header."""
    data = gzip.decompress(path.read_bytes())
    header_size = 4 + 4 * dimensions
    found_magic, *shape = struct.unpack(f">{1 + dimensions}I", data[:header_size])
    if found_magic != magic:
        raise ValueError(f"{path.name}: magic {found_magic}, expected {magic}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)

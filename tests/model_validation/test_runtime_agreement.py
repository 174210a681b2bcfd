"""The published ONNX export and the torch state dict serve the same model.

Every MNIST test digit goes through both runtimes as the service runs them
(calibrated probabilities from ``Predictor``), so serving with ONNX Runtime can never
answer differently from the torch model that training validated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mnist_backend.contract import NORMALIZATION_MEAN, NORMALIZATION_STD
from mnist_backend.inference import Predictor
from mnist_backend.runtimes import load_onnx_runtime, load_torch_runtime

from .conftest import REPO_ROOT, DigitSet

PROBABILITY_TOLERANCE = 1e-4
CHUNK = 1000


@pytest.fixture(scope="module")
def both_runtimes_probabilities(
    mnist_test_set: DigitSet,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (onnx, torch) calibrated probabilities (10000, 10) of the test set."""
    model_dir = Path(os.environ.get("MNIST_VALIDATION_MODEL_DIR", REPO_ROOT / "models"))
    onnx = Predictor(load_onnx_runtime(model_dir))
    torch = Predictor(load_torch_runtime(model_dir))
    scaled = mnist_test_set.images.astype(np.float32) / 255.0
    tensors = ((scaled - NORMALIZATION_MEAN) / NORMALIZATION_STD)[:, np.newaxis]
    tensors = tensors.astype(np.float32)

    chunks = range(0, len(tensors), CHUNK)
    onnx_probabilities = [onnx.predict_batch(tensors[i : i + CHUNK]) for i in chunks]
    torch_probabilities = [torch.predict_batch(tensors[i : i + CHUNK]) for i in chunks]
    return np.concatenate(onnx_probabilities), np.concatenate(torch_probabilities)


def test_onnx_and_torch_predict_the_same_digit_for_every_test_image(
    both_runtimes_probabilities: tuple[np.ndarray, np.ndarray],
    mnist_test_set: DigitSet,
) -> None:
    onnx, torch = both_runtimes_probabilities

    disagreements = np.flatnonzero(onnx.argmax(axis=1) != torch.argmax(axis=1))

    assert onnx.shape == torch.shape == (len(mnist_test_set.labels), 10)
    assert disagreements.tolist() == []


def test_onnx_and_torch_probabilities_agree_within_tolerance(
    both_runtimes_probabilities: tuple[np.ndarray, np.ndarray],
) -> None:
    onnx, torch = both_runtimes_probabilities

    largest_difference = float(np.abs(onnx - torch).max())

    assert largest_difference < PROBABILITY_TOLERANCE

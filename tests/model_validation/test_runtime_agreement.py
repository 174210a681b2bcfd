"""The published ONNX exports (fp32 and int8) and the torch state dict serve the
same model.

Every MNIST test digit goes through each runtime as the service runs it (calibrated
probabilities from ``Predictor``). The fp32 export must answer as torch does; the
int8 model may round a near-tie differently, but within the floors below, so serving
it can never cost more than a stated sliver of accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_backend.contract import NORMALIZATION_MEAN, NORMALIZATION_STD
from mnist_backend.inference import Predictor
from mnist_backend.preprocessing import prepare_digit
from mnist_backend.runtimes import load_onnx_runtime, load_torch_runtime

from .conftest import REPO_ROOT, DigitSet

PROBABILITY_TOLERANCE = 1e-4
# The same floors the training pipeline's int8 gate applies before publishing.
INT8_MIN_ARGMAX_AGREEMENT = 0.998
INT8_MAX_ACCURACY_DROP = 0.002
CHUNK = 1000

Runtimes = dict[str, Predictor]


def _model_dir() -> Path:
    return Path(os.environ.get("MNIST_VALIDATION_MODEL_DIR", REPO_ROOT / "models"))


@pytest.fixture(scope="module")
def predictors() -> Runtimes:
    """The published model on torch and on each ONNX artifact, as the service runs
    it."""
    model_dir = _model_dir()
    return {
        "torch": Predictor(load_torch_runtime(model_dir)),
        "fp32": Predictor(load_onnx_runtime(model_dir, precision="fp32")),
        "int8": Predictor(load_onnx_runtime(model_dir, precision="int8")),
    }


def _probabilities(predictor: Predictor, tensors: np.ndarray) -> np.ndarray:
    chunks = range(0, len(tensors), CHUNK)
    return np.concatenate(
        [predictor.predict_batch(tensors[i : i + CHUNK]) for i in chunks]
    )


@pytest.fixture(scope="module")
def probabilities(
    predictors: Runtimes, mnist_test_set: DigitSet
) -> dict[str, np.ndarray]:
    """Return each runtime's calibrated probabilities (10000, 10) of the test set,
    normalised as training normalised them."""
    scaled = mnist_test_set.images.astype(np.float32) / 255.0
    tensors = ((scaled - NORMALIZATION_MEAN) / NORMALIZATION_STD)[:, np.newaxis]
    tensors = tensors.astype(np.float32)
    return {name: _probabilities(p, tensors) for name, p in predictors.items()}


@pytest.fixture(scope="module")
def accuracy_through_preprocessing(
    predictors: Runtimes, mnist_test_set: DigitSet
) -> Callable[[str], float]:
    """Return a function giving a runtime's test accuracy through ``prepare_digit``."""
    tensors = np.stack(
        [
            prepare_digit(Image.fromarray(image)).tensor
            for image in mnist_test_set.images
        ]
    )

    def accuracy(name: str) -> float:
        predicted = _probabilities(predictors[name], tensors).argmax(axis=1)
        return float((predicted == mnist_test_set.labels).mean())

    return accuracy


def test_onnx_and_torch_predict_the_same_digit_for_every_test_image(
    probabilities: dict[str, np.ndarray], mnist_test_set: DigitSet
) -> None:
    onnx, torch = probabilities["fp32"], probabilities["torch"]

    disagreements = np.flatnonzero(onnx.argmax(axis=1) != torch.argmax(axis=1))

    assert onnx.shape == torch.shape == (len(mnist_test_set.labels), 10)
    assert disagreements.tolist() == []


def test_onnx_and_torch_probabilities_agree_within_tolerance(
    probabilities: dict[str, np.ndarray],
) -> None:
    onnx, torch = probabilities["fp32"], probabilities["torch"]

    largest_difference = float(np.abs(onnx - torch).max())

    assert largest_difference < PROBABILITY_TOLERANCE


def test_int8_predicts_torchs_digit_for_nearly_every_test_image(
    probabilities: dict[str, np.ndarray],
    predictors: Runtimes,
    mnist_test_set: DigitSet,
) -> None:
    int8, torch = probabilities["int8"], probabilities["torch"]

    agreement = float((int8.argmax(axis=1) == torch.argmax(axis=1)).mean())

    assert predictors["int8"].path.name == "convnet.int8.onnx"
    assert int8.shape == (len(mnist_test_set.labels), 10)
    assert agreement >= INT8_MIN_ARGMAX_AGREEMENT, f"agreement {agreement:.4f}"


def test_int8_accuracy_through_preprocessing_stays_within_the_fp32_tolerance(
    accuracy_through_preprocessing: Callable[[str], float],
) -> None:
    int8 = accuracy_through_preprocessing("int8")
    fp32 = accuracy_through_preprocessing("fp32")

    assert fp32 - int8 <= INT8_MAX_ACCURACY_DROP, f"int8 {int8:.4f}, fp32 {fp32:.4f}"

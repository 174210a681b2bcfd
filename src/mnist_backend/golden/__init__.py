"""The golden digits: MNIST test digits a candidate model must classify before serving.

This package owns the bundled set (``golden_digits.npz``, built by
``scripts/build_golden_set.py``) and the accuracy check run on it. Loading and
verifying the artifact itself is left to ``artifacts.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np

from mnist_backend.contract import INPUT_SHAPE, NORMALIZATION_MEAN, NORMALIZATION_STD
from mnist_backend.errors import GoldenSetError

GOLDEN_FILE = "golden_digits.npz"

PredictBatch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GoldenSet:
    """Normalised float32 tensors (N, 1, 28, 28) and their int64 labels (N,)."""

    tensors: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def load_golden_set() -> GoldenSet:
    """Return the bundled golden digits, normalised the way training normalised."""
    with resources.files(__package__).joinpath(GOLDEN_FILE).open("rb") as stream:
        archive = np.load(stream)
        images, labels = archive["images"], archive["labels"]

    # The raw digits are already in MNIST geometry; only scaling is left to do.
    scaled = images.astype(np.float32) / 255.0
    tensors = ((scaled - NORMALIZATION_MEAN) / NORMALIZATION_STD).astype(np.float32)
    return GoldenSet(
        tensors=tensors.reshape(-1, *INPUT_SHAPE), labels=labels.astype(np.int64)
    )


def score_golden_set(predict_batch: PredictBatch, golden: GoldenSet) -> float:
    """Return the share (0-1) of golden digits whose most probable class is right."""
    probabilities = predict_batch(golden.tensors)
    predicted = np.argmax(probabilities, axis=1)
    return float(np.mean(predicted == golden.labels))


def check_golden_set(
    predict_batch: PredictBatch, golden: GoldenSet, floor: float
) -> float:
    """Return the golden accuracy; raise GoldenSetError when it is below ``floor``."""
    accuracy = score_golden_set(predict_batch, golden)
    if accuracy < floor:
        raise GoldenSetError(
            f"The model classifies {accuracy:.2%} of the {len(golden)} golden digits "
            f"correctly; at least {floor:.2%} is required."
        )
    return accuracy

"""Classification and calibration metrics on plain numpy arrays."""

from __future__ import annotations

import numpy as np

from mnist_backend.contract import NUM_CLASSES


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Return row-wise probabilities of ``logits / temperature``, (N, C) float64."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exponentials = np.exp(scaled)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Return the (10, 10) count matrix: row = true digit, column = predicted digit."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float]:
    """Return the recall of each digit; a digit with no examples scores 0.0."""
    totals = matrix.sum(axis=1)
    hits = np.diag(matrix)
    return [
        float(hit / total) if total else 0.0
        for hit, total in zip(hits, totals, strict=True)
    ]


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """Return the ECE: the bin-weighted gap between confidence and accuracy.

    Predictions are grouped into ``bins`` equal-width confidence bins over (0, 1];
    each bin contributes |accuracy - mean confidence| weighted by its share.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)

    error = 0.0
    for index in range(bins):
        members = bin_of == index
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            error += members.mean() * gap
    return float(error)

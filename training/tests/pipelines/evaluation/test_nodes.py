from __future__ import annotations

import numpy as np
import pytest

from mnist_training.pipelines.evaluation.metrics import (
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    softmax,
)
from mnist_training.pipelines.evaluation.nodes import evaluate_model, fit_temperature
from mnist_training.splits import DigitSplit


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 2, 2, 0])

    matrix = confusion_matrix(labels, predictions)

    assert matrix[0, :3].tolist() == [1, 1, 0]
    assert matrix[1, :3].tolist() == [0, 1, 0]
    assert matrix[2, :3].tolist() == [1, 0, 2]
    assert int(matrix.sum()) == 6


def test_per_class_accuracy_is_the_recall_of_each_digit_and_zero_when_absent():
    matrix = np.zeros((10, 10), dtype=np.int64)
    matrix[0, 0], matrix[0, 1] = 3, 1
    matrix[1, 1] = 2

    accuracy = per_class_accuracy(matrix)

    assert accuracy[:3] == [0.75, 1.0, 0.0]


def test_ece_is_zero_when_confidence_matches_accuracy():
    # Four predictions at 0.75 confidence, three of them right.
    probabilities = np.full((4, 10), 0.25 / 9)
    probabilities[:, 0] = 0.75
    labels = np.array([0, 0, 0, 1])

    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(
        0.0
    )


def test_ece_is_the_gap_for_an_overconfident_model():
    probabilities = np.full((4, 10), 0.01 / 9)
    probabilities[:, 0] = 0.99
    labels = np.array([0, 0, 1, 1])

    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(
        0.49
    )


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(4000, 10)).astype(np.float32)
    true_temperature = 2.0
    probabilities = softmax(logits, true_temperature)
    labels = np.array([rng.choice(10, p=row) for row in probabilities], dtype=np.uint8)
    split = DigitSplit(np.zeros((4000, 28, 28), np.uint8), labels)

    temperature = fit_temperature(logits, split)

    assert temperature == pytest.approx(true_temperature, rel=0.1)


def test_evaluate_model_reports_accuracy_and_lower_ece_after_scaling():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=2000).astype(np.uint8)
    logits = rng.normal(0, 1, size=(2000, 10))
    logits[np.arange(2000), labels] += 2.0
    logits *= 4.0  # overconfident: the right temperature is about 4
    split = DigitSplit(np.zeros((2000, 28, 28), np.uint8), labels)
    temperature = fit_temperature(logits, split)

    metrics = evaluate_model(logits, split, logits, split, temperature, 15)

    expected_accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert metrics["test_accuracy"] == pytest.approx(expected_accuracy)
    assert metrics["ece_after"] < metrics["ece_before"] / 2
    assert np.array(metrics["confusion_matrix"]).sum() == 2000
    assert len(metrics["per_class_accuracy"]) == 10

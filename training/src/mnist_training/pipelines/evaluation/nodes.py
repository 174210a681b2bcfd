"""Nodes that score the trained ConvNet and calibrate its confidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from mnist_backend.models.convnet import ConvNet
from mnist_training.pipelines.training.nodes import to_model_input
from mnist_training.splits import DigitSplit

from .metrics import (
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    softmax,
)


class EvaluationMetrics(TypedDict):
    test_accuracy: float
    validation_accuracy: float
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]
    ece_before: float
    ece_after: float
    temperature: float
    test_size: int


@torch.inference_mode()
def compute_logits(
    model_state: Mapping[str, torch.Tensor], split: DigitSplit
) -> np.ndarray:
    """Return the ConvNet's logits for every digit of ``split``, (N, 10) float32."""
    model = ConvNet()
    model.load_state_dict(dict(model_state))
    model.eval()
    inputs = to_model_input(split.images)
    logits = [model(chunk) for chunk in inputs.split(1000)]
    return torch.cat(logits).numpy() if logits else np.zeros((0, 10), np.float32)


def fit_temperature(
    logits: np.ndarray, split: DigitSplit, max_iterations: int = 200
) -> float:
    """Return the temperature T > 0 that minimises the NLL of softmax(logits / T)
    against ``split``'s labels.

    Fitted on the validation split, never on the test split, so the test ECE after
    scaling is an honest estimate.
    """
    logit_tensor = torch.from_numpy(logits.astype(np.float64))
    label_tensor = torch.from_numpy(split.labels.astype(np.int64))
    # Optimising log T keeps T positive without a constraint.
    log_temperature = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=max_iterations)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logit_tensor / log_temperature.exp(), label_tensor)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_temperature.detach().exp())


def evaluate_model(
    test_logits: np.ndarray,
    test: DigitSplit,
    validation_logits: np.ndarray,
    validation: DigitSplit,
    temperature: float,
    calibration_bins: int,
) -> EvaluationMetrics:
    """Return accuracy, per-digit accuracy, confusion matrix and ECE before and after
    temperature scaling, all on the test split."""
    predictions = test_logits.argmax(axis=1)
    matrix = confusion_matrix(test.labels, predictions)
    validation_correct = validation_logits.argmax(axis=1) == validation.labels
    return EvaluationMetrics(
        test_accuracy=float((predictions == test.labels).mean()),
        validation_accuracy=float(validation_correct.mean()),
        per_class_accuracy=per_class_accuracy(matrix),
        confusion_matrix=matrix.tolist(),
        ece_before=expected_calibration_error(
            softmax(test_logits), test.labels, calibration_bins
        ),
        ece_after=expected_calibration_error(
            softmax(test_logits, temperature), test.labels, calibration_bins
        ),
        temperature=temperature,
        test_size=len(test),
    )

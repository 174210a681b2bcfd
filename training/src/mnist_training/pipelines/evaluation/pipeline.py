"""Wires the evaluation nodes: logits, temperature on validation, metrics on test."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import compute_logits, evaluate_model, fit_temperature


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            node(
                compute_logits,
                inputs=["model_state", "mnist_validation"],
                outputs="validation_logits",
                name="compute_validation_logits",
            ),
            node(
                compute_logits,
                inputs=["model_state", "mnist_test"],
                outputs="test_logits",
                name="compute_test_logits",
            ),
            node(
                fit_temperature,
                inputs=["validation_logits", "mnist_validation"],
                outputs="temperature",
                name="fit_temperature",
            ),
            node(
                evaluate_model,
                inputs=[
                    "test_logits",
                    "mnist_test",
                    "validation_logits",
                    "mnist_validation",
                    "temperature",
                    "params:evaluation.calibration_bins",
                ],
                outputs="evaluation_metrics",
                name="evaluate_model",
            ),
        ]
    )

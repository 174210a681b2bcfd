"""Wires the training node."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import train_convnet


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            node(
                train_convnet,
                inputs=["mnist_train", "mnist_validation", "params:training"],
                outputs=["model_state", "training_history"],
                name="train_convnet",
            )
        ]
    )

"""Wires the publish nodes: serialise, export, quantise, describe, then publish."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import (
    build_model_card,
    collect_provenance,
    export_onnx,
    publish_model,
    serialise_state_dict,
)
from .quantisation import quantise_onnx


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            node(
                serialise_state_dict,
                inputs="model_state",
                outputs="model_artifact",
                name="serialise_state_dict",
            ),
            node(
                export_onnx,
                inputs=["model_state", "mnist_test", "params:publish.onnx_tolerance"],
                outputs="onnx_artifact",
                name="export_onnx",
            ),
            node(
                quantise_onnx,
                inputs=[
                    "onnx_artifact",
                    "model_state",
                    "mnist_train",
                    "mnist_test",
                    "evaluation_metrics",
                    "params:publish.int8",
                ],
                outputs=["int8_artifact", "int8_report"],
                name="quantise_onnx",
            ),
            node(
                collect_provenance,
                inputs=None,
                outputs="provenance",
                name="collect_provenance",
            ),
            node(
                build_model_card,
                inputs=[
                    "model_artifact",
                    "onnx_artifact",
                    "int8_artifact",
                    "int8_report",
                    "evaluation_metrics",
                    "training_history",
                    "mnist_checksums",
                    "params:data_processing",
                    "params:training",
                    "provenance",
                ],
                outputs="model_card",
                name="build_model_card",
            ),
            node(
                publish_model,
                inputs=[
                    "model_artifact",
                    "onnx_artifact",
                    "int8_artifact",
                    "model_card",
                    "params:publish.model_dir",
                ],
                outputs="published_files",
                name="publish_model",
            ),
        ]
    )

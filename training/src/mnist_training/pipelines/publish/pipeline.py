"""Wires the publish nodes: serialise, export, describe, then publish atomically."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import (
    build_model_card,
    collect_provenance,
    export_onnx,
    publish_model,
    serialise_state_dict,
)


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
                    "model_card",
                    "params:publish.model_dir",
                ],
                outputs="published_files",
                name="publish_model",
            ),
        ]
    )

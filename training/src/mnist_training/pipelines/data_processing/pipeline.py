"""Wires the data processing nodes: verify, decode, split."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import (
    decode_mnist,
    split_train_validation,
    subsample_split,
    verify_raw_files,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            node(
                verify_raw_files,
                inputs=["mnist_raw_files", "params:data_processing.file_names"],
                outputs="mnist_checksums",
                name="verify_raw_files",
            ),
            node(
                decode_mnist,
                inputs=[
                    "mnist_raw_files",
                    "params:data_processing.file_names",
                    "mnist_checksums",
                ],
                outputs=["mnist_train_full", "mnist_test_full"],
                name="decode_mnist",
            ),
            node(
                split_train_validation,
                inputs=[
                    "mnist_train_full",
                    "params:data_processing.validation_size",
                    "params:data_processing.seed",
                ],
                outputs=["mnist_train_split", "mnist_validation"],
                name="split_train_validation",
            ),
            node(
                subsample_split,
                inputs=[
                    "mnist_train_split",
                    "params:data_processing.max_train_size",
                    "params:data_processing.seed",
                ],
                outputs="mnist_train",
                name="subsample_train",
            ),
            node(
                subsample_split,
                inputs=[
                    "mnist_test_full",
                    "params:data_processing.max_test_size",
                    "params:data_processing.seed",
                ],
                outputs="mnist_test",
                name="subsample_test",
            ),
        ]
    )

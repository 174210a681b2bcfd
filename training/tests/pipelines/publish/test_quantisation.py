from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from mnist_backend.models.convnet import ConvNet
from mnist_training.pipelines.publish.nodes import export_onnx
from mnist_training.pipelines.publish.quantisation import (
    Int8Agreement,
    check_int8_gate,
    find_gate_failures,
    quantise_onnx,
    sample_calibration_tensors,
)
from mnist_training.splits import DigitSplit

from ...conftest import make_split

NO_GATE = {"max_accuracy_drop": 1.0, "min_argmax_agreement": 0.0}


def _agreement(fp32: float, int8: float, agreement: float) -> Int8Agreement:
    return Int8Agreement(
        test_size=10000,
        fp32_test_accuracy=fp32,
        int8_test_accuracy=int8,
        argmax_agreement_with_torch=agreement,
        max_probability_difference_vs_torch=0.01,
    )


@pytest.fixture(scope="module")
def model_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ConvNet().state_dict()


@pytest.fixture(scope="module")
def onnx_artifact(model_state: dict[str, torch.Tensor]) -> bytes:
    """The fp32 export of a seeded ConvNet, made once: exporting takes seconds."""
    return export_onnx(model_state, make_split(50, seed=2), tolerance=1e-3)


def test_gate_refuses_an_int8_model_that_disagrees_with_torch_too_often():
    agreement = _agreement(fp32=0.9967, int8=0.9967, agreement=0.9970)

    with pytest.raises(ValueError, match="The int8 model is refused") as caught:
        check_int8_gate(agreement, max_accuracy_drop=0.002, min_argmax_agreement=0.998)

    assert str(caught.value) == (
        "The int8 model is refused on 10000 test digits: it predicts torch's digit "
        "for 0.9970 of the test digits (required 0.9980)."
    )


def test_gate_refuses_an_accuracy_drop_beyond_the_tolerance_and_names_both():
    agreement = _agreement(fp32=0.9967, int8=0.9940, agreement=0.9950)

    with pytest.raises(ValueError, match="The int8 model is refused") as caught:
        check_int8_gate(agreement, max_accuracy_drop=0.002, min_argmax_agreement=0.998)

    assert str(caught.value) == (
        "The int8 model is refused on 10000 test digits: test accuracy 0.9940 is "
        "0.0027 below fp32's 0.9967 (allowed 0.0020); it predicts torch's digit for "
        "0.9950 of the test digits (required 0.9980)."
    )


@pytest.mark.parametrize(
    ("int8_accuracy", "agreement"),
    [
        pytest.param(0.9950, 0.9980, id="at-both-limits"),
        pytest.param(0.9970, 1.0, id="better-than-fp32"),
    ],
)
def test_gate_accepts_an_int8_model_within_both_limits(
    int8_accuracy: float, agreement: float
):
    measured = _agreement(fp32=0.9967, int8=int8_accuracy, agreement=agreement)

    failures = find_gate_failures(
        measured, max_accuracy_drop=0.002, min_argmax_agreement=0.998
    )

    assert failures == []


def test_calibration_sample_is_seeded_and_normalised_as_model_input(
    tiny_train: DigitSplit,
):
    first = sample_calibration_tensors(tiny_train, 20, seed=42)
    again = sample_calibration_tensors(tiny_train, 20, seed=42)
    other = sample_calibration_tensors(tiny_train, 20, seed=43)

    pixels = np.round((first * 0.3081 + 0.1307) * 255)
    assert (first.shape, first.dtype) == ((20, 1, 28, 28), np.float32)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert {tuple(image.ravel()) for image in pixels[:, 0].astype(np.uint8)} <= {
        tuple(image.ravel()) for image in tiny_train.images
    }


def test_calibration_sample_larger_than_the_split_is_refused(tiny_train: DigitSplit):
    with pytest.raises(ValueError, match="calibration size") as caught:
        sample_calibration_tensors(tiny_train, 201, seed=42)

    assert str(caught.value) == (
        "Expected an int8 calibration size between 1 and the 200 training digits; "
        "got 201."
    )


def test_quantise_onnx_returns_one_int8_file_and_its_report(
    onnx_artifact, model_state, tiny_train, tiny_test
):
    parameters = {"calibration_size": 100, "calibration_seed": 42, **NO_GATE}

    int8_artifact, report = quantise_onnx(
        onnx_artifact,
        model_state,
        tiny_train,
        tiny_test,
        {"temperature": 1.3},
        parameters,
    )

    graph = onnx.load_from_string(int8_artifact).graph
    operators = {node.op_type for node in graph.node}
    session = onnxruntime.InferenceSession(
        int8_artifact, providers=["CPUExecutionProvider"]
    )
    logits = session.run(None, {"input": np.zeros((5, 1, 28, 28), np.float32)})[0]
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    assert logits.shape == (5, 10)
    assert len(int8_artifact) < len(onnx_artifact) / 2
    assert report["metrics"]["test_size"] == len(tiny_test)
    assert 0.0 <= report["metrics"]["argmax_agreement_with_torch"] <= 1.0
    assert report["quantisation"]["calibration_size"] == 100
    assert report["quantisation"]["calibration_seed"] == 42
    assert report["gate"] == NO_GATE


def test_quantise_onnx_applies_the_gate(
    onnx_artifact, model_state, tiny_train, tiny_test
):
    parameters = {
        "calibration_size": 100,
        "calibration_seed": 42,
        "max_accuracy_drop": 1.0,
        # No model agrees with torch on more than every digit.
        "min_argmax_agreement": 1.01,
    }

    with pytest.raises(ValueError, match="The int8 model is refused on 50 test"):
        quantise_onnx(
            onnx_artifact,
            model_state,
            tiny_train,
            tiny_test,
            {"temperature": 1.3},
            parameters,
        )

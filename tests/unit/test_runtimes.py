from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_backend.errors import (
    ArtifactIntegrityError,
    ArtifactMissingError,
    CorruptArtifactError,
    ModelCardError,
)
from mnist_backend.inference import load_predictor
from mnist_backend.runtimes import load_runtime

from ..conftest import WriteModelDir

PUBLISHED_ONNX = Path(__file__).resolve().parents[2] / "models" / "convnet.onnx"
ONNX_SHA256 = hashlib.sha256(PUBLISHED_ONNX.read_bytes()).hexdigest()

WriteOnnxModelDir = Callable[..., Path]


@pytest.fixture
def write_onnx_model_dir(write_model_dir: WriteModelDir) -> WriteOnnxModelDir:
    """Return a function writing a model folder whose card also records an ONNX file.

    ``onnx_bytes`` replaces the ONNX file (default: the published export), ``None``
    for ``recorded_sha256`` records the bytes' true SHA-256, and ``with_file=False``
    leaves the ONNX file out while the card still names it.
    """

    def write(
        onnx_bytes: bytes | None = None,
        recorded_sha256: str | None = None,
        *,
        with_file: bool = True,
    ) -> Path:
        payload = onnx_bytes if onnx_bytes is not None else PUBLISHED_ONNX.read_bytes()
        sha256 = recorded_sha256 or hashlib.sha256(payload).hexdigest()
        model_dir = write_model_dir(
            card_changes={"onnx": {"file": "convnet.onnx", "sha256": sha256}}
        )
        if with_file:
            (model_dir / "convnet.onnx").write_bytes(payload)
        return model_dir

    return write


def test_auto_serves_the_verified_onnx_artifact(
    write_onnx_model_dir: WriteOnnxModelDir,
) -> None:
    model_dir = write_onnx_model_dir()

    loaded = load_runtime(model_dir, choice="auto")

    assert (loaded.runtime.name, loaded.sha256, loaded.path) == (
        "onnx",
        ONNX_SHA256,
        model_dir / "convnet.onnx",
    )


@pytest.mark.parametrize(
    ("changes", "reason_code"),
    [
        pytest.param({"with_file": False}, "artifact_missing", id="onnx-file-missing"),
        pytest.param(
            {"recorded_sha256": "0" * 64},
            "artifact_checksum_mismatch",
            id="onnx-sha-mismatch",
        ),
        pytest.param(
            {"onnx_bytes": b"not an onnx graph"}, "artifact_corrupt", id="onnx-corrupt"
        ),
    ],
)
def test_auto_falls_back_to_torch_and_says_why(
    write_onnx_model_dir: WriteOnnxModelDir,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, object],
    reason_code: str,
) -> None:
    model_dir = write_onnx_model_dir(**changes)

    with caplog.at_level(logging.WARNING, logger="mnist_backend.runtimes"):
        loaded = load_runtime(model_dir, choice="auto")

    card_sha256 = hashlib.sha256((model_dir / "convnet.pt").read_bytes()).hexdigest()
    assert (loaded.runtime.name, loaded.sha256) == ("torch", card_sha256)
    assert [(record.message, record.code) for record in caplog.records] == [  # type: ignore[attr-defined]
        ("ONNX artifact not used; serving with torch", reason_code)
    ]


def test_auto_serves_torch_when_the_card_records_no_onnx(model_dir: Path) -> None:
    loaded = load_runtime(model_dir, choice="auto")

    assert loaded.runtime.name == "torch"


def test_torch_choice_ignores_a_valid_onnx_artifact(
    write_onnx_model_dir: WriteOnnxModelDir,
) -> None:
    model_dir = write_onnx_model_dir()

    loaded = load_runtime(model_dir, choice="torch")

    assert loaded.runtime.name == "torch"


@pytest.mark.parametrize(
    ("changes", "error_type"),
    [
        pytest.param({"with_file": False}, ArtifactMissingError, id="file-missing"),
        pytest.param(
            {"recorded_sha256": "0" * 64}, ArtifactIntegrityError, id="sha-mismatch"
        ),
    ],
)
def test_onnx_choice_refuses_an_unusable_onnx_artifact(
    write_onnx_model_dir: WriteOnnxModelDir,
    changes: dict[str, object],
    error_type: type[Exception],
) -> None:
    model_dir = write_onnx_model_dir(**changes)

    with pytest.raises(error_type):
        load_runtime(model_dir, choice="onnx")


def test_onnx_choice_refuses_a_card_without_onnx(model_dir: Path) -> None:
    with pytest.raises(ModelCardError) as caught:
        load_runtime(model_dir, choice="onnx")

    assert caught.value.detail == (
        f"Model card in {model_dir} records no 'onnx' artifact; "
        "the ONNX runtime needs one."
    )


def test_onnx_card_may_only_name_a_bare_file(
    write_model_dir: WriteModelDir, tmp_path: Path
) -> None:
    shutil.copy(PUBLISHED_ONNX, tmp_path / "outside.onnx")
    model_dir = write_model_dir(
        card_changes={"onnx": {"file": "../outside.onnx", "sha256": ONNX_SHA256}}
    )

    with pytest.raises(ModelCardError) as caught:
        load_runtime(model_dir, choice="onnx")

    assert caught.value.detail == (
        "Model card names ONNX file '../outside.onnx'; expected a bare file name."
    )


def test_onnx_predictor_returns_calibrated_probabilities_for_a_full_batch(
    write_onnx_model_dir: WriteOnnxModelDir,
) -> None:
    predictor = load_predictor(
        write_onnx_model_dir(), runtime="onnx", warm_up_batch_sizes=(1, 32)
    )
    tensors = np.random.default_rng(0).normal(size=(32, 1, 28, 28))

    probabilities = predictor.predict_batch(tensors.astype(np.float32))

    assert probabilities.shape == (32, 10)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(32), atol=1e-5)


def test_onnx_session_runs_one_sequential_intra_op_thread(
    write_onnx_model_dir: WriteOnnxModelDir,
) -> None:
    loaded = load_runtime(write_onnx_model_dir(), choice="onnx", threads=1)

    options = loaded.runtime._session.get_session_options()  # type: ignore[attr-defined]

    assert (
        options.intra_op_num_threads,
        options.inter_op_num_threads,
        str(options.execution_mode),
        str(options.graph_optimization_level),
    ) == (1, 1, "ExecutionMode.ORT_SEQUENTIAL", "GraphOptimizationLevel.ORT_ENABLE_ALL")


def test_a_corrupt_onnx_artifact_is_refused_as_corrupt(
    write_onnx_model_dir: WriteOnnxModelDir,
) -> None:
    model_dir = write_onnx_model_dir(onnx_bytes=b"\x08\x07garbage")

    with pytest.raises(CorruptArtifactError) as caught:
        load_runtime(model_dir, choice="onnx")

    assert caught.value.detail == (
        "ONNX artifact convnet.onnx cannot be loaded by ONNX Runtime."
    )

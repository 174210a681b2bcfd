from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_backend import runtimes
from mnist_backend.errors import (
    ArtifactIntegrityError,
    ArtifactMissingError,
    CorruptArtifactError,
    ModelCardError,
)
from mnist_backend.inference import load_predictor
from mnist_backend.runtimes import RuntimeChoice, load_runtime

from ..conftest import WriteModelDir

PUBLISHED_ONNX = Path(__file__).resolve().parents[2] / "models" / "convnet.onnx"
ONNX_SHA256 = hashlib.sha256(PUBLISHED_ONNX.read_bytes()).hexdigest()
PUBLISHED_INT8 = PUBLISHED_ONNX.with_name("convnet.int8.onnx")
INT8_SHA256 = hashlib.sha256(PUBLISHED_INT8.read_bytes()).hexdigest()

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


@pytest.fixture
def write_int8_model_dir(write_model_dir: WriteModelDir) -> WriteOnnxModelDir:
    """Return a function writing a model folder whose card records the published fp32
    and int8 ONNX files.

    ``int8_bytes`` replaces the int8 file, ``int8_sha256`` the SHA-256 the card
    records for it, ``quantised_from`` the export it names as the int8 file's
    source, and ``with_int8_file=False`` leaves the file out while the card still
    names it.
    """

    def write(
        int8_bytes: bytes | None = None,
        int8_sha256: str | None = None,
        *,
        quantised_from: str = ONNX_SHA256,
        with_int8_file: bool = True,
    ) -> Path:
        payload = int8_bytes if int8_bytes is not None else PUBLISHED_INT8.read_bytes()
        sha256 = int8_sha256 or hashlib.sha256(payload).hexdigest()
        int8_entry = {
            "file": "convnet.int8.onnx",
            "sha256": sha256,
            "quantised_from_sha256": quantised_from,
        }
        model_dir = write_model_dir(
            card_changes={
                "onnx": {"file": "convnet.onnx", "sha256": ONNX_SHA256},
                "onnx_int8": int8_entry,
            }
        )
        shutil.copy(PUBLISHED_ONNX, model_dir / "convnet.onnx")
        if with_int8_file:
            (model_dir / "convnet.int8.onnx").write_bytes(payload)
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


def test_auto_serves_the_verified_int8_artifact(
    write_int8_model_dir: WriteOnnxModelDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtimes, "cpu_multiplies_int8_exactly", lambda: True)
    model_dir = write_int8_model_dir()

    loaded = load_runtime(model_dir, choice="auto", precision="auto")

    assert (loaded.runtime.name, loaded.sha256, loaded.path) == (
        "onnx",
        INT8_SHA256,
        model_dir / "convnet.int8.onnx",
    )
    assert loaded.runtime.describe()["precision"] == "int8"


@pytest.mark.parametrize("choice", ["auto", "onnx"])
@pytest.mark.parametrize(
    ("changes", "reason_code"),
    [
        pytest.param(
            {"with_int8_file": False}, "artifact_missing", id="int8-file-missing"
        ),
        pytest.param(
            {"int8_sha256": "0" * 64},
            "artifact_checksum_mismatch",
            id="int8-sha-mismatch",
        ),
        pytest.param(
            {"int8_bytes": b"not an onnx graph"}, "artifact_corrupt", id="int8-corrupt"
        ),
        pytest.param(
            {"quantised_from": "1" * 64},
            "invalid_model_card",
            id="int8-of-other-export",
        ),
    ],
)
def test_auto_precision_falls_back_to_fp32_onnx_and_says_why(
    write_int8_model_dir: WriteOnnxModelDir,
    caplog: pytest.LogCaptureFixture,
    choice: RuntimeChoice,
    changes: dict[str, object],
    reason_code: str,
) -> None:
    model_dir = write_int8_model_dir(**changes)

    with caplog.at_level(logging.WARNING, logger="mnist_backend.runtimes"):
        loaded = load_runtime(model_dir, choice=choice, precision="auto")

    assert (loaded.runtime.name, loaded.sha256, loaded.path) == (
        "onnx",
        ONNX_SHA256,
        model_dir / "convnet.onnx",
    )
    assert loaded.runtime.describe()["precision"] == "fp32"
    assert [(record.message, record.code) for record in caplog.records] == [  # type: ignore[attr-defined]
        ("int8 ONNX artifact not used; serving the fp32 export", reason_code)
    ]


def test_auto_precision_serves_fp32_without_warning_when_the_card_has_no_int8(
    write_onnx_model_dir: WriteOnnxModelDir, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = write_onnx_model_dir()

    with caplog.at_level(logging.INFO, logger="mnist_backend.runtimes"):
        loaded = load_runtime(model_dir, choice="auto", precision="auto")

    assert (loaded.sha256, loaded.runtime.describe()["precision"]) == (
        ONNX_SHA256,
        "fp32",
    )
    assert [
        (record.levelname, record.message, record.code)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.message.endswith("not used; serving the fp32 export")
    ] == [
        (
            "INFO",
            "int8 ONNX artifact not used; serving the fp32 export",
            "invalid_model_card",
        )
    ]


def test_fp32_precision_ignores_a_valid_int8_artifact(
    write_int8_model_dir: WriteOnnxModelDir,
) -> None:
    model_dir = write_int8_model_dir()

    loaded = load_runtime(model_dir, choice="onnx", precision="fp32")

    assert (loaded.sha256, loaded.runtime.describe()["precision"]) == (
        ONNX_SHA256,
        "fp32",
    )


@pytest.mark.parametrize("choice", ["auto", "onnx"])
@pytest.mark.parametrize(
    ("changes", "error_type"),
    [
        pytest.param({"with_int8_file": False}, ArtifactMissingError, id="missing"),
        pytest.param({"int8_sha256": "0" * 64}, ArtifactIntegrityError, id="sha"),
    ],
)
def test_int8_precision_refuses_an_unusable_int8_artifact_without_fallback(
    write_int8_model_dir: WriteOnnxModelDir,
    choice: RuntimeChoice,
    changes: dict[str, object],
    error_type: type[Exception],
) -> None:
    model_dir = write_int8_model_dir(**changes)

    with pytest.raises(error_type) as caught:
        load_runtime(model_dir, choice=choice, precision="int8")

    assert "convnet.int8.onnx" in str(caught.value)


def test_int8_precision_refuses_a_card_without_int8(
    write_onnx_model_dir: WriteOnnxModelDir,
) -> None:
    model_dir = write_onnx_model_dir()

    with pytest.raises(ModelCardError) as caught:
        load_runtime(model_dir, choice="auto", precision="int8")

    assert caught.value.detail == (
        f"Model card in {model_dir} records no 'onnx_int8' artifact; "
        "int8 serving needs one."
    )


def test_auto_serves_torch_when_neither_onnx_artifact_verifies(
    write_int8_model_dir: WriteOnnxModelDir, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = write_int8_model_dir(int8_sha256="0" * 64)
    (model_dir / "convnet.onnx").unlink()

    with caplog.at_level(logging.WARNING, logger="mnist_backend.runtimes"):
        loaded = load_runtime(model_dir, choice="auto", precision="auto")

    assert (loaded.runtime.name, loaded.runtime.describe()["precision"]) == (
        "torch",
        "fp32",
    )
    assert [(record.message, record.code) for record in caplog.records] == [  # type: ignore[attr-defined]
        (
            "int8 ONNX artifact not used; serving the fp32 export",
            "artifact_checksum_mismatch",
        ),
        ("ONNX artifact not used; serving with torch", "artifact_missing"),
    ]


def test_int8_predictor_returns_calibrated_probabilities_for_a_full_batch(
    write_int8_model_dir: WriteOnnxModelDir,
) -> None:
    predictor = load_predictor(
        write_int8_model_dir(), runtime="onnx", warm_up_batch_sizes=(1, 32)
    )
    tensors = np.random.default_rng(0).normal(size=(32, 1, 28, 28))

    probabilities = predictor.predict_batch(tensors.astype(np.float32))

    assert predictor.describe_runtime()["precision"] == "int8"
    assert probabilities.shape == (32, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(32), atol=1e-5)


def test_int8_precision_refuses_an_int8_file_quantised_from_another_export(
    write_int8_model_dir: WriteOnnxModelDir,
) -> None:
    model_dir = write_int8_model_dir(quantised_from="1" * 64)

    with pytest.raises(ModelCardError) as caught:
        load_runtime(model_dir, choice="onnx", precision="int8")

    assert caught.value.detail == (
        f"Model card in {model_dir} records an int8 artifact quantised from ONNX "
        f"export '{'1' * 64}', not from the export it names ('{ONNX_SHA256}'); "
        "the int8 file belongs to another model."
    )


def test_auto_serves_fp32_on_a_cpu_without_int8_dot_products(
    write_int8_model_dir: WriteOnnxModelDir,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(runtimes, "cpu_multiplies_int8_exactly", lambda: False)
    model_dir = write_int8_model_dir()

    with caplog.at_level(logging.WARNING, logger="mnist_backend.runtimes"):
        automatic = load_runtime(model_dir, precision="auto")
    demanded = load_runtime(model_dir, precision="int8")

    assert (automatic.path.name, demanded.path.name) == (
        "convnet.onnx",
        "convnet.int8.onnx",
    )
    assert any("no VNNI" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("machine", "cpuinfo", "expected"),
    [
        pytest.param("x86_64", "flags\t: sse avx2 avx512_vnni\n", True, id="vnni"),
        pytest.param("x86_64", "flags\t: sse avx2 avx_vnni\n", True, id="avx-vnni"),
        pytest.param("x86_64", "flags\t: sse avx2 fma\n", False, id="avx2-only"),
        pytest.param("x86_64", None, False, id="unreadable"),
        pytest.param("aarch64", None, True, id="arm"),
    ],
)
def test_int8_is_trusted_only_where_its_kernels_cannot_saturate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    machine: str,
    cpuinfo: str | None,
    expected: bool,
) -> None:
    monkeypatch.setattr(runtimes.platform, "machine", lambda: machine)
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text("processor\t: 0\n" + cpuinfo)

    assert runtimes.cpu_multiplies_int8_exactly(path) is expected

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_backend.config import Settings, get_settings, load_settings
from mnist_backend.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MNIST_MODEL_DIR",
        "MNIST_MAX_UPLOAD_BYTES",
        "MNIST_MAX_IMAGE_PIXELS",
        "MNIST_MAX_BATCH_FILES",
        "MNIST_INFERENCE_THREADS",
        "MNIST_CORS_ORIGINS",
        "MNIST_LOG_LEVEL",
        "MNIST_LOG_FORMAT",
        "MNIST_RUNTIME",
        "MNIST_ONNX_PRECISION",
    ):
        monkeypatch.delenv(name, raising=False)


def test_settings_defaults_serve_the_bundled_model_with_documented_limits() -> None:
    settings = load_settings()

    assert settings == Settings(
        model_dir=Path("models"),
        max_upload_bytes=10 * 1024 * 1024,
        max_image_pixels=40_000_000,
        max_batch_files=64,
        inference_threads=1,
        cors_origins=[],
        log_level="INFO",
        log_format="auto",
        runtime="auto",
        onnx_precision="auto",
    )


def test_settings_read_prefixed_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNIST_MODEL_DIR", "/srv/models")
    monkeypatch.setenv("MNIST_MAX_UPLOAD_BYTES", "2048")
    monkeypatch.setenv("MNIST_MAX_IMAGE_PIXELS", "1000")
    monkeypatch.setenv("MNIST_MAX_BATCH_FILES", "8")
    monkeypatch.setenv("MNIST_LOG_LEVEL", "debug")
    monkeypatch.setenv("MNIST_LOG_FORMAT", "json")

    settings = load_settings()

    assert (
        settings.model_dir,
        settings.max_upload_bytes,
        settings.max_image_pixels,
        settings.max_batch_files,
        settings.log_level,
        settings.log_format,
    ) == (Path("/srv/models"), 2048, 1000, 8, "DEBUG", "json")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('["https://a.example", "https://b.example"]', id="json-list"),
        pytest.param("https://a.example, https://b.example", id="comma-separated"),
    ],
)
def test_settings_parse_cors_origins(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MNIST_CORS_ORIGINS", value)

    settings = load_settings()

    assert settings.cors_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        pytest.param(
            "MNIST_MAX_UPLOAD_BYTES",
            "ten",
            "Input should be a valid integer, unable to parse string as an integer",
            id="upload-limit-not-a-number",
        ),
        pytest.param(
            "MNIST_MAX_BATCH_FILES",
            "0",
            "Input should be greater than 0",
            id="batch-limit-zero",
        ),
        pytest.param(
            "MNIST_LOG_FORMAT",
            "xml",
            "Input should be 'json', 'text' or 'auto'",
            id="unknown-log-format",
        ),
        pytest.param(
            "MNIST_ONNX_PRECISION",
            "int4",
            "Input should be 'auto', 'int8' or 'fp32'",
            id="unknown-onnx-precision",
        ),
    ],
)
def test_settings_reject_bad_value_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert (
        caught.value.detail == f"Invalid configuration: {variable}='{value}': {reason}"
    )


@pytest.mark.parametrize(
    ("runtime", "precision"),
    [
        pytest.param("onnx", "int8", id="onnx-int8"),
        pytest.param("auto", "fp32", id="auto-fp32"),
        pytest.param("torch", "fp32", id="torch-fp32"),
    ],
)
def test_settings_read_the_onnx_precision(
    monkeypatch: pytest.MonkeyPatch, runtime: str, precision: str
) -> None:
    monkeypatch.setenv("MNIST_RUNTIME", runtime)
    monkeypatch.setenv("MNIST_ONNX_PRECISION", precision)

    settings = load_settings()

    assert (settings.runtime, settings.onnx_precision) == (runtime, precision)


def test_settings_refuse_int8_precision_with_the_torch_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNIST_RUNTIME", "torch")
    monkeypatch.setenv("MNIST_ONNX_PRECISION", "int8")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert caught.value.detail == (
        "Invalid configuration: MNIST_ONNX_PRECISION='int8': Value error, int8 is "
        "served by ONNX Runtime only; MNIST_RUNTIME is 'torch'"
    )


def test_get_settings_reads_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNIST_MAX_BATCH_FILES", "3")
    first = get_settings()
    monkeypatch.setenv("MNIST_MAX_BATCH_FILES", "5")

    second = get_settings()

    assert (second is first, second.max_batch_files) == (True, 3)

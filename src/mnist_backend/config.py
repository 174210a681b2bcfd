"""Service settings read from ``MNIST_``-prefixed environment variables.

This module owns the names, defaults and validation of every setting; the rest of the
service receives a ``Settings`` object through ``get_settings()`` and never reads the
environment itself.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mnist_backend.errors import ConfigurationError
from mnist_backend.runtimes import OnnxPrecision, RuntimeChoice

ENV_PREFIX = "MNIST_"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text", "auto"]


class Settings(BaseSettings):
    """Every tunable of the service, with defaults that serve the bundled model."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        protected_namespaces=(),
    )

    # Relative paths resolve against the working directory, so running from the
    # repository root serves the published artifact in ./models.
    model_dir: Path = Path("models")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_batch_files: int = Field(default=64, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "auto"

    # Serving performance: runtime, threads, workers, batching and backpressure.
    # "auto" serves the verified ONNX artifact when the card records one, else torch.
    runtime: RuntimeChoice = "auto"
    # Which ONNX artifact: "auto" the int8 one when the card records it and it
    # verifies, else the fp32 export; "int8" or "fp32" that one or no model.
    onnx_precision: OnnxPrecision = "auto"
    # Intra-op threads of each worker's single inference thread. One per worker lets
    # the workers, not threads, share the cores, so a busy machine does not collapse.
    inference_threads: int = Field(default=1, gt=0)
    # Worker processes of `mnist-backend serve`; unset means one per usable core
    # (affinity and cgroup CPU quota).
    workers: int | None = Field(default=None, gt=0)
    # "auto" pins each worker of `mnist-backend serve` to a core of its own when the
    # server owns exactly as many cores as it has workers (see cpu.pinning_applies);
    # "off" leaves placement to the scheduler.
    cpu_pinning: Literal["auto", "off"] = "auto"
    # Once the model is loaded, freeze the start-up objects out of garbage collection
    # and collect young objects every GC_YOUNG_THRESHOLD allocations (api/main.py).
    gc_tuning: bool = True
    # Requests that arrive while a batch runs go together into the next, up to this.
    max_batch_size: int = Field(default=32, gt=0, le=1024)
    # Requests waiting for the model per worker; past this, 503 "overloaded".
    max_queue_size: int = Field(default=256, gt=0)
    # A request still queued after this long answers 503 "deadline_exceeded".
    request_deadline_seconds: float = Field(default=2.0, gt=0)
    # Uploads up to this many bytes and pixels are decoded on the event loop, the rest
    # on a thread: a 28x28 PNG decodes in about the CPU time a thread hop costs, and
    # the pixel cap bounds how long the loop is blocked (see benchmarks/RESULTS.md).
    inline_decode_max_bytes: int = Field(default=65536, ge=0)
    inline_decode_max_pixels: int = Field(default=16384, ge=0)

    # Operations: model hot reload, admin API and graceful shutdown.
    # Seconds between checks of the model card for a newly published model; 0 = off.
    reload_interval_seconds: float = Field(default=5.0, ge=0)
    # A candidate model must classify at least this share of the golden digits.
    golden_accuracy_floor: float = Field(default=0.97, ge=0, le=1)
    # Bearer token of the admin API; the admin routes do not exist while it is unset.
    admin_token: SecretStr | None = None
    # Directory the worker processes of one `mnist-backend serve` share to agree on
    # the model; `serve` creates it, and without it each process decides alone.
    run_dir: Path | None = None
    # After SIGTERM, requests in flight get this long to finish before the exit.
    drain_timeout_seconds: int = Field(default=20, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_means_unset(cls, value: object) -> object:
        # An empty token would let an empty Authorization header in; treat it as unset.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("onnx_precision")
    @classmethod
    def _int8_needs_onnx(cls, value: str, info: ValidationInfo) -> str:
        # torch runs fp32 only; demanding int8 from it could never be met.
        if value == "int8" and info.data.get("runtime") == "torch":
            raise ValueError(
                f"int8 is served by ONNX Runtime only; {ENV_PREFIX}RUNTIME is 'torch'"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string of origins."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [origin.strip() for origin in text.split(",") if origin.strip()]


def load_settings() -> Settings:
    """Return settings read from the environment.

    Raises ConfigurationError naming each offending variable and its value.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(_describe_invalid_settings(exc)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once and then cached."""
    return load_settings()


def _describe_invalid_settings(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        variable = f"{ENV_PREFIX}{field.upper()}"
        problems.append(f"{variable}={item.get('input')!r}: {item['msg']}")
    return "Invalid configuration: " + "; ".join(problems)

"""Response models of the HTTP API and the error examples the OpenAPI schema shows.

These classes are the public contract of the JSON bodies; how they are filled is the
routes' business.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What went wrong, for a person to read.")
    code: str = Field(description="Stable machine-readable error code.")
    request_id: str = Field(description="The request's X-Request-ID.")


class ItemError(BaseModel):
    """Why one file of a batch got no prediction."""

    detail: str
    code: str
    status: int = Field(description="The status this file alone would have received.")


class RankedDigit(BaseModel):
    digit: int = Field(ge=0, le=9)
    probability: float = Field(ge=0.0, le=1.0)


class DigitPrediction(BaseModel):
    """The model's reading of one digit."""

    prediction: int = Field(ge=0, le=9, description="The most probable digit.")
    confidence: float = Field(
        ge=0.0, le=1.0, description="Calibrated probability of the predicted digit."
    )
    probabilities: list[float] = Field(
        min_length=10,
        max_length=10,
        description="Calibrated probability of each digit 0-9; they sum to 1.",
    )
    top_k: list[RankedDigit] | None = Field(
        default=None, description="The k most probable digits, most probable first."
    )
    input_image: str | None = Field(
        default=None,
        description="Base64 PNG of the 28x28 image the model saw (white on black).",
    )


_EXAMPLE_PROBABILITIES = [
    0.0001,
    0.0002,
    0.0004,
    0.0003,
    0.0001,
    0.0001,
    0.0000,
    0.9980,
    0.0002,
    0.0006,
]
_EXAMPLE_PREDICTION: dict[str, Any] = {
    "prediction": 7,
    "confidence": 0.998,
    "probabilities": _EXAMPLE_PROBABILITIES,
    "top_k": [{"digit": 7, "probability": 0.998}, {"digit": 9, "probability": 0.0006}],
}


class PredictionResponse(DigitPrediction):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_EXAMPLE_PREDICTION,
                    "model_version": "20261203.171500-1a2b3c4d",
                    "processing_time_ms": 1.9,
                }
            ]
        }
    )

    model_version: str
    processing_time_ms: float


class BatchItem(BaseModel):
    """One file's outcome: a prediction or that file's own error, never both."""

    index: int = Field(ge=0, description="Position of the file in the request.")
    filename: str | None = None
    status: Literal["ok", "error"]
    result: DigitPrediction | None = None
    error: ItemError | None = None


class BatchPredictionResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_version": "20261203.171500-1a2b3c4d",
                    "processing_time_ms": 4.2,
                    "succeeded": 1,
                    "failed": 1,
                    "results": [
                        {
                            "index": 0,
                            "filename": "seven.png",
                            "status": "ok",
                            "result": _EXAMPLE_PREDICTION,
                        },
                        {
                            "index": 1,
                            "filename": "notes.txt",
                            "status": "error",
                            "error": {
                                "detail": "Got text; expected a PNG, JPEG, WEBP, "
                                "BMP, GIF or TIFF image.",
                                "code": "unsupported_media_type",
                                "status": 415,
                            },
                        },
                    ],
                }
            ]
        }
    )

    model_version: str
    processing_time_ms: float
    succeeded: int
    failed: int
    results: list[BatchItem]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    model_version: str


class ServiceInfo(BaseModel):
    name: str
    version: str


class ModelInfo(BaseModel):
    model_version: str
    sha256: str
    card: dict[str, Any]


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_image_pixels: int
    max_batch_files: int


class ReloadReport(BaseModel):
    """What the last model reload or rollback of one worker process did."""

    outcome: Literal["activated", "unchanged", "refused", "rolled_back"]
    reason: str = Field(description="Why, for a person to read.")
    model_version: str | None = Field(
        description="The version activated, refused or rolled back to."
    )
    at: str = Field(description="When, as ISO-8601 UTC.")
    trigger: Literal["poll", "admin", "sync"] = Field(
        description="A changed model card, an admin request, or another worker."
    )
    code: str | None = Field(
        default=None, description="The failed check's code when refused."
    )
    worker_pid: int = Field(description="The process that did it.")


class InfoResponse(BaseModel):
    service: ServiceInfo
    ready: bool
    model: ModelInfo | None = Field(description="The active model; null when none.")
    worker_pid: int = Field(description="The worker process that answered.")
    last_reload: ReloadReport | None = Field(
        default=None, description="This worker's last reload or rollback, if any."
    )
    runtime: dict[str, str | int]
    input_contract: dict[str, Any]
    limits: LimitsInfo


def error_examples(*cases: tuple[str, str]) -> dict[str, Any]:
    """Return an OpenAPI ``content`` block with one error example per (code, detail)."""
    examples = {
        code: {
            "summary": code,
            "value": {"detail": detail, "code": code, "request_id": "3f2b9c0e8d7a4b1c"},
        }
        for code, detail in cases
    }
    return {"application/json": {"examples": examples}}


def error_responses(
    table: dict[int, tuple[str, list[tuple[str, str]]]],
) -> dict[int | str, dict[str, Any]]:
    """Return ``responses=`` from {status: (description, [(code, detail)])}."""
    return {
        status: {
            "model": ErrorResponse,
            "description": description,
            "content": error_examples(*cases),
        }
        for status, (description, cases) in table.items()
    }

"""Prediction endpoints: one uploaded digit, or a batch of them in one request."""

from __future__ import annotations

import base64
import time
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Query, Request

from mnist_backend.api.deps import PredictorDep, PreprocessingLimiterDep, SettingsDep
from mnist_backend.api.handlers import status_for
from mnist_backend.api.schemas import (
    BatchItem,
    BatchPredictionResponse,
    DigitPrediction,
    ItemError,
    PredictionResponse,
    RankedDigit,
    error_responses,
)
from mnist_backend.api.uploads import UploadedFile, read_upload_files
from mnist_backend.errors import EmptyUploadError, InvalidUploadError
from mnist_backend.inference import Predictor
from mnist_backend.logs import annotate_access
from mnist_backend.preprocessing import PreparedDigit, encode_png, preprocess_upload

router = APIRouter(prefix="/api/v1", tags=["predictions"])

TopK = Annotated[
    int | None,
    Query(ge=1, le=10, description="Also return the k most probable digits (1-10)."),
]
IncludeInput = Annotated[
    bool,
    Query(description="Also return the 28x28 image the model saw, as base64 PNG."),
]

_UPLOAD_ERRORS = {
    413: (
        "The body, an image or the number of files is over its limit.",
        [
            ("upload_too_large", "The request body exceeds the upload limit."),
            ("image_too_large", "The image declares more pixels than allowed."),
            ("too_many_files", "A request may carry at most 64 files."),
        ],
    ),
    415: (
        "The upload is not an image in an accepted format.",
        [
            (
                "unsupported_media_type",
                "Got text; expected a PNG, JPEG, WEBP, BMP, GIF or TIFF image.",
            )
        ],
    ),
    422: (
        "The body or the image cannot be used, or a query parameter is invalid.",
        [
            ("not_multipart", "Expected a multipart/form-data body with a boundary."),
            ("missing_file", "Expected a file in multipart field 'file'."),
            ("empty_upload", "The request body is empty."),
            ("undecodable_image", "The image is truncated or corrupt."),
            ("no_digit_found", "The image holds no digit to classify."),
            ("validation_error", "Invalid request: query 'top_k': out of range"),
        ],
    ),
    503: (
        "No validated model is loaded.",
        [("model_unavailable", "No validated model is loaded: checksum mismatch.")],
    ),
}


def _multipart_body(field_name: str, *, many: bool) -> dict[str, Any]:
    """Return the OpenAPI request body for files sent under ``field_name``."""
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    field_schema = {"type": "array", "items": file_schema} if many else file_schema
    schema = {
        "type": "object",
        "required": [field_name],
        "properties": {field_name: field_schema},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


@router.post(
    "/predict",
    response_model_exclude_none=True,
    responses=error_responses(_UPLOAD_ERRORS),
    openapi_extra=_multipart_body("file", many=False),
)
async def predict_digit(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    limiter: PreprocessingLimiterDep,
    top_k: TopK = None,
    include_input: IncludeInput = False,
) -> PredictionResponse:
    """Recognise the handwritten digit in one uploaded image.

    Send the image as multipart/form-data in the field `file`, at most
    `max_upload_bytes` (10 MB by default), as PNG, JPEG, WEBP, BMP, GIF or TIFF;
    only the first frame of an animated image is read. Any colours work: the image
    is converted to a white digit on black, cropped and centred the way the model
    was trained.
    `confidence` is the calibrated probability of `prediction`.

    Errors: 413 when the body or the image's pixel count is over its limit; 415 when
    the file is not an accepted image format; 422 for a missing field, an empty or
    non-multipart body, a corrupt image, a blank image or a bad query parameter;
    503 when no validated model is loaded.
    """
    started = time.perf_counter()
    files = await read_upload_files(
        request, field_name="file", max_bytes=settings.max_upload_bytes, max_files=1
    )

    prepared = await _prepare(files[0], limiter, settings.max_image_pixels)
    probabilities = await predictor.predict(prepared.tensor)

    prediction = _describe(probabilities, prepared, top_k, include_input)
    annotate_access(digit=prediction.prediction, confidence=prediction.confidence)
    return PredictionResponse(
        **prediction.model_dump(),
        model_version=predictor.model_version,
        processing_time_ms=_elapsed_ms(started),
    )


@router.post(
    "/predict/batch",
    response_model_exclude_none=True,
    responses=error_responses(_UPLOAD_ERRORS),
    openapi_extra=_multipart_body("files", many=True),
)
async def predict_digit_batch(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    limiter: PreprocessingLimiterDep,
    top_k: TopK = None,
    include_input: IncludeInput = False,
) -> BatchPredictionResponse:
    """Recognise one digit in each of several uploaded images.

    Send up to `max_batch_files` (64 by default) images as multipart/form-data, each
    in a part named `files`; the whole body counts against `max_upload_bytes`.
    `results` has one entry per file, in the order sent: `status` "ok" with a
    `result`, or "error" with that file's own `error` (the code and status a single
    upload of it would get). One bad file never fails the others.

    Errors for the whole request: 413 when the body is over the upload limit or
    there are more than `max_batch_files` files; 422 for a missing field or an empty
    or non-multipart body; 503 when no validated model is loaded.
    """
    started = time.perf_counter()
    files = await read_upload_files(
        request,
        field_name="files",
        max_bytes=settings.max_upload_bytes,
        max_files=settings.max_batch_files,
    )

    prepared, errors = await _prepare_each(files, limiter, settings.max_image_pixels)
    probabilities = await _predict_prepared(predictor, prepared)

    results: list[BatchItem] = []
    for index, upload in enumerate(files):
        if index in errors:
            error = errors[index]
            results.append(
                BatchItem(
                    index=index, filename=upload.filename, status="error", error=error
                )
            )
            continue
        result = _describe(probabilities[index], prepared[index], top_k, include_input)
        results.append(
            BatchItem(index=index, filename=upload.filename, status="ok", result=result)
        )
    annotate_access(files=len(files), failed=len(errors))
    return BatchPredictionResponse(
        model_version=predictor.model_version,
        processing_time_ms=_elapsed_ms(started),
        succeeded=len(prepared),
        failed=len(errors),
        results=results,
    )


async def _prepare(
    upload: UploadedFile, limiter: anyio.CapacityLimiter, max_pixels: int
) -> PreparedDigit:
    """Return the model input for ``upload``, decoded on a worker thread."""
    if not upload.data:
        name = f" '{upload.filename}'" if upload.filename else ""
        raise EmptyUploadError(f"The uploaded file{name} is empty.")
    return await anyio.to_thread.run_sync(
        partial(preprocess_upload, upload.data, max_pixels=max_pixels), limiter=limiter
    )


async def _prepare_each(
    files: list[UploadedFile], limiter: anyio.CapacityLimiter, max_pixels: int
) -> tuple[dict[int, PreparedDigit], dict[int, ItemError]]:
    """Return the prepared digits and the per-file errors, both keyed by position.

    Files are decoded one after another, so a batch holds at most one decoded
    full-size image at a time.
    """
    prepared: dict[int, PreparedDigit] = {}
    errors: dict[int, ItemError] = {}
    for index, upload in enumerate(files):
        try:
            prepared[index] = await _prepare(upload, limiter, max_pixels)
        except InvalidUploadError as exc:
            errors[index] = ItemError(
                detail=exc.detail, code=exc.code, status=status_for(exc)
            )
    return prepared, errors


async def _predict_prepared(
    predictor: Predictor, prepared: dict[int, PreparedDigit]
) -> dict[int, np.ndarray]:
    """Return each prepared digit's (10,) probabilities from one model call."""
    if not prepared:
        return {}
    tensors = np.stack([digit.tensor for digit in prepared.values()])
    probabilities = await predictor.predict_many(tensors)
    return dict(zip(prepared, probabilities, strict=True))


def _describe(
    probabilities: np.ndarray,
    prepared: PreparedDigit,
    top_k: int | None,
    include_input: bool,
) -> DigitPrediction:
    """Return the prediction fields for one (10,) probability vector."""
    digit = int(np.argmax(probabilities))
    ranked = None
    if top_k is not None:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        ranked = [
            RankedDigit(digit=int(rank), probability=float(probabilities[rank]))
            for rank in order
        ]
    input_image = None
    if include_input:
        input_image = base64.b64encode(encode_png(prepared.pixels)).decode("ascii")
    return DigitPrediction(
        prediction=digit,
        confidence=float(probabilities[digit]),
        probabilities=[float(value) for value in probabilities],
        top_k=ranked,
        input_image=input_image,
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)

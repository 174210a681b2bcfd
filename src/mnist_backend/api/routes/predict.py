"""Prediction endpoints: one uploaded digit, or a batch of them in one request.

Responses are serialised straight to JSON bytes: the response models document the
bodies in OpenAPI, but validating every response against them cost more than the
model's own inference on the hot path (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import base64
import time
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.to_thread
import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response

from mnist_backend.api.deps import PredictionContext, PredictionContextDep
from mnist_backend.api.handlers import status_for
from mnist_backend.api.schemas import (
    BatchPredictionResponse,
    PredictionResponse,
    error_responses,
)
from mnist_backend.api.uploads import UploadedFile, read_upload_files
from mnist_backend.errors import (
    EmptyUploadError,
    ImageTooLargeError,
    InvalidUploadError,
)
from mnist_backend.logs import annotate_access
from mnist_backend.preprocessing import PreparedDigit, encode_png, preprocess_upload

router = APIRouter(prefix="/api/v1", tags=["predictions"])

PREDICT_PATH = "/api/v1/predict"

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
        "No validated model is loaded, or the service is too busy right now "
        "(`overloaded` comes with a Retry-After header).",
        [
            ("model_unavailable", "No validated model is loaded: checksum mismatch."),
            ("overloaded", "The inference queue is full (256 waiting); retry in 1 s."),
            (
                "deadline_exceeded",
                "The request waited 2 s for the model without reaching it.",
            ),
        ],
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
    response_model=PredictionResponse,
    response_model_exclude_none=True,
    responses=error_responses(_UPLOAD_ERRORS),
    openapi_extra=_multipart_body("file", many=False),
)
async def predict_digit(
    request: Request,
    context: PredictionContextDep,
    top_k: TopK = None,
    include_input: IncludeInput = False,
) -> Response:
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
    503 when no validated model is loaded, when the service is overloaded (retry
    after the `Retry-After` seconds) or when the request waited past its deadline.
    """
    return await predict_one(request, context, top_k, include_input)


async def predict_one(
    request: Request,
    context: PredictionContext,
    top_k: int | None = None,
    include_input: bool = False,
) -> Response:
    """Answer one single-image prediction request; raises the domain errors."""
    started = time.perf_counter()
    # Refuse before reading the body when no model is loaded.
    context.holder.require()
    settings = context.settings
    files = await read_upload_files(
        request, field_name="file", max_bytes=settings.max_upload_bytes, max_files=1
    )

    prepared = await _prepare(files[0], context)
    inference = await context.batcher.predict(prepared.tensor)

    body = _describe(inference.probabilities, prepared, top_k, include_input)
    annotate_access(digit=body["prediction"], confidence=body["confidence"])
    body["model_version"] = inference.model_version
    body["processing_time_ms"] = _elapsed_ms(started)
    return _json_response(body)


@router.post(
    "/predict/batch",
    response_model=BatchPredictionResponse,
    response_model_exclude_none=True,
    responses=error_responses(_UPLOAD_ERRORS),
    openapi_extra=_multipart_body("files", many=True),
)
async def predict_digit_batch(
    request: Request,
    context: PredictionContextDep,
    top_k: TopK = None,
    include_input: IncludeInput = False,
) -> Response:
    """Recognise one digit in each of several uploaded images.

    Send up to `max_batch_files` (64 by default) images as multipart/form-data, each
    in a part named `files`; the whole body counts against `max_upload_bytes`.
    `results` has one entry per file, in the order sent: `status` "ok" with a
    `result`, or "error" with that file's own `error` (the code and status a single
    upload of it would get). One bad file never fails the others.

    Errors for the whole request: 413 when the body is over the upload limit or
    there are more than `max_batch_files` files; 422 for a missing field or an empty
    or non-multipart body; 503 when no validated model is loaded, when the service
    is overloaded (retry after the `Retry-After` seconds) or when the request waited
    past its deadline.
    """
    started = time.perf_counter()
    predictor = context.holder.require()
    settings = context.settings
    files = await read_upload_files(
        request,
        field_name="files",
        max_bytes=settings.max_upload_bytes,
        max_files=settings.max_batch_files,
    )

    prepared, errors = await _prepare_each(files, context)
    inferences = await context.batcher.predict_many(
        [digit.tensor for digit in prepared.values()]
    )
    probabilities = dict(
        zip(prepared, (item.probabilities for item in inferences), strict=True)
    )

    results: list[dict[str, Any]] = []
    for index, upload in enumerate(files):
        item: dict[str, Any] = {"index": index, "filename": upload.filename}
        if index in errors:
            item.update(status="error", error=errors[index])
        else:
            result = _describe(
                probabilities[index], prepared[index], top_k, include_input
            )
            item.update(status="ok", result=result)
        results.append(_without_none(item))
    # Each digit and confidence goes on the access line, where metrics count them.
    succeeded = [item["result"] for item in results if item["status"] == "ok"]
    annotate_access(
        files=len(files),
        failed=len(errors),
        digits=[result["prediction"] for result in succeeded],
        confidences=[result["confidence"] for result in succeeded],
    )
    model_version = (
        inferences[0].model_version if inferences else predictor.model_version
    )
    return _json_response(
        {
            "model_version": model_version,
            "processing_time_ms": _elapsed_ms(started),
            "succeeded": len(prepared),
            "failed": len(errors),
            "results": results,
        }
    )


async def _prepare(upload: UploadedFile, context: PredictionContext) -> PreparedDigit:
    """Return the model input for ``upload``, decoding large uploads on a thread."""
    if not upload.data:
        name = f" '{upload.filename}'" if upload.filename else ""
        raise EmptyUploadError(f"The uploaded file{name} is empty.")
    settings = context.settings
    max_pixels = settings.max_image_pixels
    if len(upload.data) <= settings.inline_decode_max_bytes:
        # A small image decodes in about the CPU time of a hop to a worker thread
        # and back (benchmarks/RESULTS.md), so it is decoded right here. The pixel
        # cap is checked from the header before decoding: a small file can still
        # hold a large flat picture, which must not block the event loop.
        inline_pixels = min(max_pixels, settings.inline_decode_max_pixels)
        try:
            return preprocess_upload(upload.data, max_pixels=inline_pixels)
        except ImageTooLargeError:
            if inline_pixels == max_pixels:
                raise
    return await anyio.to_thread.run_sync(
        partial(preprocess_upload, upload.data, max_pixels=max_pixels),
        limiter=context.preprocessing_limiter,
    )


async def _prepare_each(
    files: list[UploadedFile], context: PredictionContext
) -> tuple[dict[int, PreparedDigit], dict[int, dict[str, Any]]]:
    """Return the prepared digits and the per-file errors, both keyed by position.

    Files are decoded one after another, so a batch holds at most one decoded
    full-size image at a time.
    """
    prepared: dict[int, PreparedDigit] = {}
    errors: dict[int, dict[str, Any]] = {}
    for index, upload in enumerate(files):
        try:
            prepared[index] = await _prepare(upload, context)
        except InvalidUploadError as exc:
            errors[index] = {
                "detail": exc.detail,
                "code": exc.code,
                "status": status_for(exc),
            }
    return prepared, errors


def _describe(
    probabilities: np.ndarray,
    prepared: PreparedDigit,
    top_k: int | None,
    include_input: bool,
) -> dict[str, Any]:
    """Return the prediction fields for one (10,) probability vector."""
    values: list[float] = probabilities.tolist()
    digit = int(np.argmax(probabilities))
    body: dict[str, Any] = {
        "prediction": digit,
        "confidence": values[digit],
        "probabilities": values,
    }
    if top_k is not None:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        body["top_k"] = [
            {"digit": int(rank), "probability": values[rank]} for rank in order
        ]
    if include_input:
        png = encode_png(prepared.pixels)
        body["input_image"] = base64.b64encode(png).decode("ascii")
    return body


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _json_response(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)

"""Turn every failure into a JSON error of one shape: detail, code and request id.

The status each domain exception becomes is decided here and nowhere else. FastAPI's
own 404/405/422 errors are reshaped to match, and an unexpected exception becomes a
generic 500 whose traceback is logged once and never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_backend.errors import (
    AdminTokenInvalidError,
    AdminTokenMissingError,
    ArtifactError,
    DeadlineExceededError,
    ImageTooLargeError,
    InvalidUploadError,
    MnistBackendError,
    ModelRefusedError,
    ModelUnavailableError,
    NoPreviousModelError,
    OverloadedError,
    ShuttingDownError,
    TooManyFilesError,
    UnsupportedImageError,
    UploadTooLargeError,
)
from mnist_backend.logs import annotate_access, current_request_id

logger = logging.getLogger(__name__)

# Checked in order, so a subclass must come before its base class.
_STATUS_BY_ERROR: tuple[tuple[type[MnistBackendError], int], ...] = (
    (UnsupportedImageError, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (UploadTooLargeError, status.HTTP_413_CONTENT_TOO_LARGE),
    (ImageTooLargeError, status.HTTP_413_CONTENT_TOO_LARGE),
    (TooManyFilesError, status.HTTP_413_CONTENT_TOO_LARGE),
    (InvalidUploadError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (ModelUnavailableError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (OverloadedError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (DeadlineExceededError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (ShuttingDownError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (AdminTokenMissingError, status.HTTP_401_UNAUTHORIZED),
    (AdminTokenInvalidError, status.HTTP_403_FORBIDDEN),
    (NoPreviousModelError, status.HTTP_409_CONFLICT),
    (ModelRefusedError, status.HTTP_409_CONFLICT),
    # An artifact error reaches a client only as the reason the service is not ready.
    (ArtifactError, status.HTTP_503_SERVICE_UNAVAILABLE),
)

_CODE_BY_HTTP_STATUS: Mapping[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    415: "unsupported_media_type",
}

INTERNAL_ERROR_DETAIL = "The server failed to handle this request."


def status_for(error: MnistBackendError) -> int:
    """Return the HTTP status a domain error becomes (500 for unmapped ones)."""
    for error_type, status_code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status_code
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def error_response(
    status_code: int,
    detail: str,
    code: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Return the JSON error body every failure shares, stamped with the request id."""
    # The code goes on the access line too, where the metrics count rejections.
    annotate_access(error_code=code)
    body = {"detail": detail, "code": code, "request_id": current_request_id()}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def handle_domain_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, MnistBackendError):
        raise TypeError(f"handle_domain_error got {type(exc).__name__}") from exc
    headers = None
    if isinstance(exc, OverloadedError):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    elif isinstance(exc, AdminTokenMissingError):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status_for(exc), exc.detail, exc.code, headers)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError(f"handle_http_exception got {type(exc).__name__}") from exc
    code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "http_error")
    detail = str(exc.detail)
    if exc.status_code == status.HTTP_404_NOT_FOUND:
        detail = "No endpoint matches this path; see /docs for the API."
    elif exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"Method {request.method} is not allowed here; allowed: {allowed}."
    return error_response(exc.status_code, detail, code, exc.headers)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise TypeError(f"handle_validation_error got {type(exc).__name__}") from exc
    problems = [_describe_validation_problem(error) for error in exc.errors()]
    return error_response(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "Invalid request: " + "; ".join(problems),
        "validation_error",
    )


async def handle_client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    # Nobody is left to read this response; it exists for the access line's status.
    return error_response(
        status.HTTP_400_BAD_REQUEST,
        "The client disconnected before sending the whole body.",
        "client_disconnected",
    )


def _describe_validation_problem(error: Mapping[str, object]) -> str:
    location = error.get("loc", ())
    parts = [str(part) for part in location] if isinstance(location, tuple) else []
    # The first element says where the value came from: query, path, header, body.
    where = " ".join([*parts[:1], repr(".".join(parts[1:]))]) if parts else "request"
    return f"{where}: {error.get('msg', 'invalid value')}"


class UnhandledErrorMiddleware:
    """Answer an unexpected exception with a generic 500 and log its traceback once.

    Sits inside the request-context middleware so the 500 carries the request id, and
    swallows the exception so the server does not log the same traceback again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception:
            logger.exception("unhandled error", extra={"path": scope["path"]})
            if response_started:
                # Limit: a failure after the headers went out cannot become a 500;
                # the client sees a truncated response instead.
                return
            response = error_response(
                status.HTTP_500_INTERNAL_SERVER_ERROR,
                INTERNAL_ERROR_DETAIL,
                "internal_error",
            )
            await response(scope, receive, send)


def register_exception_handlers(app: FastAPI) -> None:
    """Install the handlers that give every error response the shared shape."""
    app.add_exception_handler(MnistBackendError, handle_domain_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(ClientDisconnect, handle_client_disconnect)

"""Logging set-up and the request-context middleware that stamps every record.

This module owns how log lines look (JSON lines for deployments, readable lines on a
terminal), the request id each record carries, and the one access line per request.
What gets logged elsewhere is each module's own business.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
NO_REQUEST_ID = "-"
# ASGI gives header names in lower case.
_REQUEST_ID_HEADER_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")

_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
_request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST_ID)
_access_fields: ContextVar[dict[str, object] | None] = ContextVar(
    "access_fields", default=None
)

access_logger = logging.getLogger("mnist_backend.access")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
# uvicorn adds "color_message", the same text with terminal colour codes.
_STANDARD_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "request_id", "taskName", "color_message"}


def current_request_id() -> str:
    """Return the id of the request being handled, or "-" outside a request."""
    return _request_id.get()


def current_access_fields() -> dict[str, object]:
    """Return the fields annotated on this request's access line so far ({} outside)."""
    return _access_fields.get() or {}


def annotate_access(**fields: object) -> None:
    """Add fields (for example digit and confidence) to this request's access line."""
    access_fields = _access_fields.get()
    if access_fields is not None:
        access_fields.update(fields)


def configure_logging(level: str, log_format: str) -> None:
    """Send every record to stdout as JSON lines or readable text, at ``level``.

    ``log_format`` is "json", "text" or "auto" (JSON unless stdout is a terminal).
    Calling it again replaces the handler it installed before, and leaves handlers
    installed by others alone.
    """
    _install_request_id_factory()
    use_json = log_format == "json" or (
        log_format == "auto" and not sys.stdout.isatty()
    )

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.set_name("mnist_backend")

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "mnist_backend":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


def _install_request_id_factory() -> None:
    """Make every LogRecord carry ``request_id``, whichever handler receives it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_request_id", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _request_id.get()
        return record

    record_with_request_id.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_RECORD_FIELDS
    }


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST_ID),
            **_extra_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # orjson writes the access line several times faster than json; values it
        # cannot serialise (paths, exceptions) are written as their str().
        line: bytes = orjson.dumps(entry, default=str, option=_JSON_OPTIONS)
        return line.decode()


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, extras appended as key=value."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = NO_REQUEST_ID
        line = super().format(record)
        extras = " ".join(
            f"{key}={value}" for key, value in _extra_fields(record).items()
        )
        if not extras:
            return line
        # Keep the traceback, if any, below the fields rather than in front of them.
        first_line, newline, rest = line.partition("\n")
        return f"{first_line} {extras}{newline}{rest}"


def _accept_or_generate_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_HEADER_NAME:
            supplied: str = value.decode("latin-1")
            if _REQUEST_ID_PATTERN.fullmatch(supplied):
                return supplied
            break
    # Unique, not secret: 128 random bits from a per-process generator (reseeded in
    # forked children) cost a fraction of uuid4's system call per request.
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    """Give each HTTP request an id, echo it in X-Request-ID and log one access line.

    A well-formed client id (1-128 characters of letters, digits, '.', '_' or '-')
    is kept so callers can trace a request across services; anything else is
    replaced by 32 fresh random hex digits.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _accept_or_generate_request_id(scope)
        access_fields: dict[str, object] = {}
        request_id_token = _request_id.set(request_id)
        access_token = _access_fields.set(access_fields)
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            latency_ms = round((time.perf_counter() - started) * 1000, 2)
            _log_access(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "latency_ms": latency_ms,
                    **access_fields,
                }
            )
            _access_fields.reset(access_token)
            _request_id.reset(request_id_token)


def _log_access(fields: dict[str, object]) -> None:
    """Log the access line with ``fields``, as ``access_logger.info`` would.

    The record is made directly: the caller's file and line, which ``info`` finds
    by walking the stack on every request, would always name this module.
    """
    if not access_logger.isEnabledFor(logging.INFO):
        return
    record = access_logger.makeRecord(
        access_logger.name, logging.INFO, __file__, 0, "request", (), None, extra=fields
    )
    access_logger.handle(record)

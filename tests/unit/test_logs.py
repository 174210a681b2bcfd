"""Structured logs: one access line per request, JSON lifecycle events, no secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mnist_backend import imaging
from mnist_backend.api.main import create_app
from mnist_backend.config import Settings
from mnist_backend.logs import JsonFormatter, configure_logging

ADMIN_TOKEN = "never-log-this-token-4f9a"
REQUEST_ID = "trace-0001"


@pytest.fixture
def app_client(model_dir: Path) -> Iterator[TestClient]:
    """The service over a test artifact, with an admin token, logging JSON."""
    settings = Settings(
        model_dir=model_dir,
        log_format="json",
        admin_token=ADMIN_TOKEN,
        reload_interval_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record for record in caplog.records if record.name == "mnist_backend.access"
    ]


def test_request_writes_exactly_one_access_line_with_its_request_id(
    app_client: TestClient, caplog: pytest.LogCaptureFixture, seven_png: bytes
) -> None:
    caplog.set_level(logging.INFO)

    response = app_client.post(
        "/api/v1/predict",
        files={"file": ("7.png", seven_png)},
        headers={"X-Request-ID": REQUEST_ID},
    )

    lines = _access_lines(caplog)
    body = response.json()
    assert len(lines) == 1
    fields = lines[0].__dict__
    assert {
        key: fields[key]
        for key in ("request_id", "method", "path", "status", "digit", "confidence")
    } == {
        "request_id": REQUEST_ID,
        "method": "POST",
        "path": "/api/v1/predict",
        "status": 200,
        "digit": body["prediction"],
        "confidence": body["confidence"],
    }
    assert isinstance(fields["latency_ms"], float)


def test_client_error_is_an_info_access_line_with_its_code_not_an_error(
    app_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    app_client.post("/api/v1/predict", files={"file": ("notes.txt", b"hello")})

    lines = _access_lines(caplog)
    assert [(line.levelname, line.__dict__["status"]) for line in lines] == [
        ("INFO", 415)
    ]
    assert lines[0].__dict__["error_code"] == "unsupported_media_type"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_json_formatter_writes_one_parseable_object_with_the_extra_fields() -> None:
    record = logging.LogRecord(
        "mnist_backend.access", logging.INFO, __file__, 1, "request", None, None
    )
    record.status = 200
    record.path = "/api/v1/predict"

    line = JsonFormatter().format(record)

    entry = json.loads(line)
    assert "\n" not in line
    assert {key: entry[key] for key in ("level", "logger", "message")} == {
        "level": "INFO",
        "logger": "mnist_backend.access",
        "message": "request",
    }
    assert (entry["status"], entry["path"], entry["request_id"]) == (
        200,
        "/api/v1/predict",
        "-",
    )


def test_lifecycle_events_are_logged_from_start_to_shutdown(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(model_dir=model_dir, log_format="json")

    with TestClient(create_app(settings)):
        pass

    events = [r.getMessage() for r in caplog.records if r.name.startswith("mnist")]
    loaded = next(r for r in caplog.records if r.getMessage() == "model loaded")
    assert events[0] == "service starting"
    assert events[-1] == "shutting down"
    assert "model loaded" in events
    assert loaded.__dict__["path"] == str(model_dir.resolve() / "convnet.pt")
    assert loaded.__dict__["model_version"] == "20261203.120000-testtest"
    assert len(loaded.__dict__["sha256"]) == 64


@pytest.mark.parametrize("native", [True, False])
def test_start_up_says_whether_imaging_runs_natively(
    native: bool,
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not native:
        monkeypatch.setattr(imaging, "_digitcore", None)
    caplog.set_level(logging.INFO)

    with TestClient(create_app(Settings(model_dir=model_dir, log_format="json"))):
        pass

    starting = next(r for r in caplog.records if r.getMessage() == "service starting")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert starting.__dict__["native_imaging"] is native
    assert (
        any("native imaging extension not built" in w for w in warnings) is not native
    )


def test_admin_token_never_reaches_the_logs(
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(model_dir=model_dir, log_format="json", admin_token=ADMIN_TOKEN)

    with TestClient(create_app(settings)) as client:
        for token in (ADMIN_TOKEN, ADMIN_TOKEN + "-wrong"):
            client.post(
                "/api/v1/admin/reload", headers={"Authorization": f"Bearer {token}"}
            )

    output = capsys.readouterr().out
    starting = next(r for r in caplog.records if r.getMessage() == "service starting")
    assert ADMIN_TOKEN not in output
    assert all(ADMIN_TOKEN not in str(record.__dict__) for record in caplog.records)
    assert starting.__dict__["settings"]["admin_token"] == "**********"
    messages = [json.loads(line)["message"] for line in output.splitlines()]
    assert messages.count("request") == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_writes_readable_lines_to_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    configure_logging("INFO", "auto")

    logging.getLogger("mnist_backend.test").info("hello", extra={"status": 200})

    line = terminal.getvalue().strip()
    assert line.endswith("INFO    mnist_backend.test [-] hello status=200")

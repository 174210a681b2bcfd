"""Once the model is loaded, the service collects young objects less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mnist_backend.api.main import GC_YOUNG_THRESHOLD, create_app
from mnist_backend.config import Settings

PYTHON_DEFAULT_THRESHOLDS = (700, 10, 10)


@pytest.fixture
def default_collector() -> Iterator[None]:
    """Start from Python's own collector settings and put the suite's back after."""
    kept = gc.get_threshold()
    gc.set_threshold(*PYTHON_DEFAULT_THRESHOLDS)
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*kept)


@pytest.mark.usefixtures("default_collector")
def test_start_up_freezes_its_objects_and_raises_the_young_threshold(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")

    with TestClient(create_app(Settings(model_dir=model_dir))):
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        frozen = gc.get_freeze_count()
    # A second app in the same process leaves the tuned collector as it is.
    with TestClient(create_app(Settings(model_dir=model_dir))):
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)

    assert frozen > 10_000
    tuned = [r for r in caplog.records if r.getMessage() == "garbage collector tuned"]
    assert len(tuned) == 1


@pytest.mark.usefixtures("default_collector")
def test_tuning_can_be_turned_off(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_GC_TUNING", "false")
    settings = Settings(model_dir=model_dir)

    with TestClient(create_app(settings)):
        assert gc.get_threshold() == PYTHON_DEFAULT_THRESHOLDS
        assert gc.get_freeze_count() == 0
    assert settings.gc_tuning is False

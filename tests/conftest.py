"""Fixtures shared by every test suite: global-state hygiene and model artifacts."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mnist_backend.config import get_settings

MODEL_VERSION = "20261203.120000-testtest"
TEMPERATURE = 1.5

WriteModelDir = Callable[..., Path]


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """Undo what app start-up changes globally: logging, settings cache, threads."""
    import torch

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    record_factory = logging.getLogRecordFactory()
    threads = torch.get_num_threads()
    get_settings.cache_clear()

    yield

    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(record_factory)
    torch.set_num_threads(threads)
    get_settings.cache_clear()


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _seeded_state_dict_bytes() -> bytes:
    import torch

    from mnist_backend.models.convnet import ConvNet

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(ConvNet().state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture
def write_model_dir(tmp_path: Path) -> WriteModelDir:
    """Return a function writing an artifact and its model card into a new folder.

    ``payload`` replaces the artifact's bytes (default: a seeded random ConvNet);
    the card records their SHA-256 unless ``card_changes`` overrides it.
    """

    def write(
        payload: bytes | None = None,
        card_changes: Mapping[str, Any] | None = None,
    ) -> Path:
        existing = len(list(tmp_path.glob("models*")))
        model_dir = tmp_path / ("models" if existing == 0 else f"models-{existing}")
        model_dir.mkdir()
        artifact = payload if payload is not None else _seeded_state_dict_bytes()
        (model_dir / "convnet.pt").write_bytes(artifact)
        card = {
            "schema_version": 1,
            "model_version": MODEL_VERSION,
            "architecture": {"name": "convnet-bn-v1", "parameters": 458858},
            "artifact": {
                "file": "convnet.pt",
                "sha256": hashlib.sha256(artifact).hexdigest(),
                "bytes": len(artifact),
                "format": "torch-state-dict",
            },
            "calibration": {"temperature": TEMPERATURE},
        }
        card = _merge(card, card_changes or {})
        (model_dir / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
        return model_dir

    return write


@pytest.fixture
def model_dir(write_model_dir: WriteModelDir) -> Path:
    """A folder holding a valid artifact of a seeded, untrained ConvNet."""
    return write_model_dir()

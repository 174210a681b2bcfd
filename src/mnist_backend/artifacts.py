"""Load a published model artifact and refuse it unless every check passes.

This module owns the trust boundary around ``models/``: the model card is read, the
artifact's SHA-256 is compared with the card before a single byte is deserialised, the
state dict is loaded without executing code, and its tensors must fit the ConvNet
exactly. Running the model is left to ``inference.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_backend.contract import ARCHITECTURE_NAME, MODEL_CARD_FILENAME
from mnist_backend.errors import (
    ArchitectureMismatchError,
    ArtifactIntegrityError,
    ArtifactMissingError,
    CorruptArtifactError,
    ModelCardError,
    UnsafeArtifactError,
)

if TYPE_CHECKING:
    import torch

    from mnist_backend.models.convnet import ConvNet

logger = logging.getLogger(__name__)

STATE_DICT_FORMAT = "torch-state-dict"
_HASH_CHUNK_BYTES = 1024 * 1024
# Names of at most this many tensors go into an error message; the rest are counted.
_MAX_NAMED_TENSORS = 8


@dataclass(frozen=True)
class LoadedModel:
    """A ConvNet in eval mode with the card and checksum it was verified against."""

    model: ConvNet
    card: Mapping[str, Any]
    sha256: str
    path: Path
    model_version: str
    temperature: float


def load_artifact(model_dir: Path) -> LoadedModel:
    """Return the verified model published in ``model_dir``.

    Raises ModelCardError, ArtifactMissingError, ArtifactIntegrityError,
    UnsafeArtifactError, CorruptArtifactError or ArchitectureMismatchError; in every
    case nothing from the artifact has been executed.
    """
    card = read_model_card(model_dir)
    artifact_path = resolve_artifact_file(
        model_dir, card["artifact"]["file"], "artifact"
    )
    sha256 = verify_checksum(artifact_path, card["artifact"]["sha256"])

    state_dict = read_state_dict(artifact_path)
    model = build_model(state_dict)

    logger.info(
        "model artifact verified",
        extra={
            "path": str(artifact_path),
            "sha256": sha256,
            "model_version": card["model_version"],
        },
    )
    return LoadedModel(
        model=model,
        card=card,
        sha256=sha256,
        path=artifact_path,
        model_version=card["model_version"],
        temperature=float(card["calibration"]["temperature"]),
    )


def read_model_card(model_dir: Path) -> dict[str, Any]:
    """Return the model card in ``model_dir`` after checking the fields serving uses."""
    card_path = model_dir / MODEL_CARD_FILENAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelCardError(f"No model card at {card_path}.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"Model card {card_path} is not readable JSON.") from exc

    if not isinstance(card, dict):
        raise ModelCardError(f"Model card {card_path} is not a JSON object.")
    _check_card_fields(card, card_path)
    return card


def verify_checksum(path: Path, expected_sha256: str) -> str:
    """Return the SHA-256 of ``path`` when it equals ``expected_sha256``.

    Reads the file in chunks, so a large artifact never sits in memory twice.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as artifact:
            while chunk := artifact.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise ArtifactMissingError(f"Model artifact {path} does not exist.") from exc
    except OSError as exc:
        raise ArtifactMissingError(f"Model artifact {path} is not readable.") from exc

    actual = digest.hexdigest()
    check_sha256(path, actual, expected_sha256, "Model artifact")
    return actual


def check_sha256(path: Path, actual: str, expected: str, description: str) -> None:
    """Raise ArtifactIntegrityError unless ``actual`` equals the SHA-256 of the card."""
    if actual != expected.lower():
        raise ArtifactIntegrityError(
            f"{description} {path.name} has SHA-256 {actual}, "
            f"but its model card records {expected}."
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Return the artifact's tensors, loaded without running any pickled code."""
    # Imported here so the service can run on ONNX Runtime without torch installed.
    import torch

    try:
        # weights_only refuses every pickled global outside torch's tensor types,
        # so a crafted artifact fails here instead of running its payload.
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise UnsafeArtifactError(
            f"Model artifact {path.name} holds objects other than tensors; "
            "refusing to load it."
        ) from exc
    except Exception as exc:
        raise CorruptArtifactError(
            f"Model artifact {path.name} is not a readable torch state dict."
        ) from exc

    if not isinstance(loaded, Mapping):
        raise UnsafeArtifactError(
            f"Model artifact {path.name} holds a {type(loaded).__name__}, "
            "not a state dict."
        )
    not_tensors = [
        str(name)
        for name, value in loaded.items()
        if not isinstance(name, str) or not isinstance(value, torch.Tensor)
    ]
    if not_tensors:
        raise UnsafeArtifactError(
            f"Model artifact {path.name} maps {_name_tensors(not_tensors)} "
            "to something other than a tensor."
        )
    return dict(loaded)


def build_model(state_dict: Mapping[str, torch.Tensor]) -> ConvNet:
    """Return a ConvNet in eval mode holding exactly the tensors of ``state_dict``.

    Raises ArchitectureMismatchError naming missing, unexpected or misshapen tensors.
    """
    from mnist_backend.models.convnet import ConvNet

    model = ConvNet()
    expected = model.state_dict()

    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = sorted(
        f"{name} {tuple(state_dict[name].shape)} (expected {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in state_dict and state_dict[name].shape != tensor.shape
    )
    problems = [
        f"{label}: {_name_tensors(names)}"
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("misshapen", misshapen),
        )
        if names
    ]
    if problems:
        raise ArchitectureMismatchError(
            f"The state dict does not fit {ARCHITECTURE_NAME}; " + "; ".join(problems)
        )

    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model


def resolve_artifact_file(model_dir: Path, file_name: str, kind: str) -> Path:
    """Return ``model_dir / file_name``, accepting only a bare file name from the card,
    so a card can never point the service outside its model directory."""
    if Path(file_name).name != file_name or file_name in {"", ".", ".."}:
        raise ModelCardError(
            f"Model card names {kind} file {file_name!r}; expected a bare file name."
        )
    return model_dir / file_name


def _check_card_fields(card: Mapping[str, Any], card_path: Path) -> None:
    artifact = card.get("artifact")
    if not isinstance(artifact, dict):
        raise ModelCardError(f"Model card {card_path} lacks the 'artifact' object.")
    for key in ("file", "sha256"):
        if not isinstance(artifact.get(key), str):
            raise ModelCardError(f"Model card {card_path} lacks 'artifact.{key}'.")
    if artifact.get("format", STATE_DICT_FORMAT) != STATE_DICT_FORMAT:
        raise ModelCardError(
            f"Model card {card_path} declares artifact format "
            f"{artifact.get('format')!r}; expected {STATE_DICT_FORMAT!r}."
        )

    if not isinstance(card.get("model_version"), str):
        raise ModelCardError(f"Model card {card_path} lacks 'model_version'.")

    architecture = card.get("architecture")
    name = architecture.get("name") if isinstance(architecture, dict) else None
    if name != ARCHITECTURE_NAME:
        raise ArchitectureMismatchError(
            f"Model card {card_path} declares architecture {name!r}; "
            f"this service runs {ARCHITECTURE_NAME!r}."
        )

    calibration = card.get("calibration")
    temperature = (
        calibration.get("temperature") if isinstance(calibration, dict) else None
    )
    is_positive_number = (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and math.isfinite(temperature)
        and temperature > 0
    )
    if not is_positive_number:
        raise ModelCardError(
            f"Model card {card_path} lacks a positive 'calibration.temperature'."
        )


def _name_tensors(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED_TENSORS])
    hidden = len(names) - _MAX_NAMED_TENSORS
    return shown if hidden <= 0 else f"{shown} and {hidden} more"

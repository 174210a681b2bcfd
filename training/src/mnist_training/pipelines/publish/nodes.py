"""Nodes that package the trained ConvNet and publish it into the service's models/.

Publishing is atomic per file (temporary file, fsync, rename) and the model card is
written last, so a reader that trusts the card never sees a half-written artifact.
The int8 copy of the ONNX export is made and checked in ``quantisation.py``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from mnist_backend.contract import (
    MODEL_CARD_FILENAME,
    MODEL_CARD_SCHEMA_VERSION,
    MODEL_FILENAME,
    ONNX_FILENAME,
    describe_preprocessing,
)
from mnist_backend.models.convnet import ARCHITECTURE_NAME, ConvNet, count_parameters
from mnist_training.pipelines.evaluation.nodes import EvaluationMetrics
from mnist_training.pipelines.publish.quantisation import (
    ONNX_INT8_FILENAME,
    Int8Report,
)
from mnist_training.pipelines.training.nodes import EpochRecord, to_model_input
from mnist_training.splits import DigitSplit

logger = logging.getLogger(__name__)

ONNX_OPSET = 18
_TRACKED_LIBRARIES = ("torch", "numpy", "kedro", "onnx", "onnxscript", "mnist-backend")


class Provenance(TypedDict):
    created_at: str
    git_commit: str
    library_versions: dict[str, str]
    python: str


class PublishedFiles(TypedDict):
    model_dir: str
    files: list[str]
    model_version: str


def serialise_state_dict(model_state: Mapping[str, torch.Tensor]) -> bytes:
    """Return ``model_state`` as ``torch.save`` bytes: tensors only, nothing that
    needs more than ``torch.load(weights_only=True)`` to read back."""
    buffer = io.BytesIO()
    torch.save(
        {name: tensor.contiguous() for name, tensor in model_state.items()}, buffer
    )
    return buffer.getvalue()


def export_onnx(
    model_state: Mapping[str, torch.Tensor], test: DigitSplit, tolerance: float
) -> bytes:
    """Return the ConvNet as one self-contained ONNX file with a dynamic batch axis.

    The export is checked against the torch model on every digit of ``test``: the
    largest logit difference must stay under ``tolerance`` and every predicted digit
    must agree, otherwise the export is refused.
    """
    import onnxruntime

    model = ConvNet()
    model.load_state_dict(dict(model_state))
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model,
        (torch.zeros(2, 1, 28, 28),),
        dynamo=True,
        external_data=False,
        opset_version=ONNX_OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: batch}},
        verbose=False,
    )
    onnx_bytes: bytes = program.model_proto.SerializeToString()

    session = onnxruntime.InferenceSession(
        onnx_bytes, providers=["CPUExecutionProvider"]
    )
    inputs = to_model_input(test.images)
    with torch.inference_mode():
        expected = torch.cat([model(chunk) for chunk in inputs.split(1000)]).numpy()
    actual = np.concatenate(
        [session.run(None, {"input": chunk.numpy()})[0] for chunk in inputs.split(1000)]
    )
    difference = float(np.abs(actual - expected).max())
    disagreements = int((actual.argmax(axis=1) != expected.argmax(axis=1)).sum())
    if difference > tolerance or disagreements:
        raise ValueError(
            f"The ONNX export differs from the torch model: max logit difference "
            f"{difference:.2e} (tolerance {tolerance:.0e}); "
            f"{disagreements} digits disagree."
        )
    logger.info(
        "onnx export verified on %d digits, max_difference=%.2e", len(test), difference
    )
    return onnx_bytes


def collect_provenance() -> Provenance:
    """Return when, from which commit and with which libraries this run trained."""
    versions = {}
    for library in _TRACKED_LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return Provenance(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_read_git_commit(),
        library_versions=versions,
        python=platform.python_version(),
    )


def _read_git_commit() -> str:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = completed.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return f"{commit}-dirty" if dirty else commit


def build_model_card(
    artifact: bytes,
    onnx_artifact: bytes,
    int8_artifact: bytes,
    int8_report: Int8Report,
    metrics: EvaluationMetrics,
    history: list[EpochRecord],
    checksums: Mapping[str, str],
    data_parameters: Mapping[str, Any],
    training_parameters: Mapping[str, Any],
    provenance: Provenance,
) -> dict[str, Any]:
    """Return the model card that describes ``artifact``: what it is, how it was made
    and how well it does. The service checks the artifact against its SHA-256."""
    sha256 = hashlib.sha256(artifact).hexdigest()
    created = datetime.fromisoformat(provenance["created_at"])
    model = ConvNet()
    return {
        "schema_version": MODEL_CARD_SCHEMA_VERSION,
        "model_version": f"{created:%Y%m%d.%H%M%S}-{sha256[:8]}",
        "architecture": {
            "name": ARCHITECTURE_NAME,
            "parameters": count_parameters(model),
        },
        "artifact": {
            "file": MODEL_FILENAME,
            "sha256": sha256,
            "bytes": len(artifact),
            "format": "torch-state-dict",
        },
        "onnx": {
            "file": ONNX_FILENAME,
            "sha256": hashlib.sha256(onnx_artifact).hexdigest(),
            "bytes": len(onnx_artifact),
            "opset": ONNX_OPSET,
        },
        # The int8 model is a faster copy of the ONNX export, not a new model: its
        # figures are against torch, and "metrics" stay those of the fp32 model.
        "onnx_int8": {
            "file": ONNX_INT8_FILENAME,
            "sha256": hashlib.sha256(int8_artifact).hexdigest(),
            "bytes": len(int8_artifact),
            # Lets the service refuse an int8 file left over from an earlier export.
            "quantised_from_sha256": hashlib.sha256(onnx_artifact).hexdigest(),
            "quantisation": dict(int8_report["quantisation"]),
            "metrics": dict(int8_report["metrics"]),
            "gate": dict(int8_report["gate"]),
        },
        "calibration": {
            "method": "temperature scaling",
            "temperature": metrics["temperature"],
        },
        "metrics": dict(metrics),
        "preprocessing": describe_preprocessing(),
        "dataset": {
            "name": "MNIST",
            "files": dict(checksums),
            "validation_size": data_parameters["validation_size"],
            "max_train_size": data_parameters["max_train_size"],
            "split_seed": data_parameters["seed"],
        },
        "training": {
            "parameters": dict(training_parameters),
            "epochs_completed": len(history),
            "seconds": round(sum(record["seconds"] for record in history), 1),
            "history": list(history),
        },
        "created_at": provenance["created_at"],
        "git_commit": provenance["git_commit"],
        "library_versions": provenance["library_versions"],
        "python": provenance["python"],
    }


def publish_model(
    artifact: bytes,
    onnx_artifact: bytes,
    int8_artifact: bytes,
    model_card: Mapping[str, Any],
    model_dir: str,
) -> PublishedFiles:
    """Write the artifacts and then the card into ``model_dir``, each atomically.

    A reader polling the card sees either the previous model or the complete new
    one: the card that names the new SHA-256 is renamed into place last.
    """
    import json

    target = Path(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    card_bytes = (json.dumps(model_card, indent=2) + "\n").encode("utf-8")
    writes = [
        (MODEL_FILENAME, artifact),
        (ONNX_FILENAME, onnx_artifact),
        (ONNX_INT8_FILENAME, int8_artifact),
        (MODEL_CARD_FILENAME, card_bytes),
    ]
    for name, payload in writes:
        write_atomically(target / name, payload)
    logger.info(
        "published model_version=%s into %s", model_card["model_version"], target
    )
    return PublishedFiles(
        model_dir=str(target.resolve()),
        files=[name for name, _ in writes],
        model_version=str(model_card["model_version"]),
    )


def write_atomically(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` so that no reader ever sees a partial file.

    The bytes go to a temporary file in the same directory, are flushed to disk,
    and the file is renamed over ``path``; on any failure the temporary file is
    removed and ``path`` is left as it was.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file private; the service may run as another user.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

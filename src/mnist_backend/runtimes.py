"""Choose and load the runtime that executes the ConvNet: ONNX Runtime or torch.

The published model comes as a torch state dict and, optionally, as an ONNX export
whose SHA-256 the model card records. ONNX Runtime runs one image in less than half
the time and memory of torch eager, so ``auto`` serves the ONNX artifact whenever it
is present and verified, and falls back to torch otherwise. torch is imported only
when the torch runtime is used, so an ONNX-only install serves without it. Batching
and probabilities are left to ``inference.py``.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from mnist_backend.artifacts import (
    check_sha256,
    load_artifact,
    read_model_card,
    resolve_artifact_file,
)
from mnist_backend.contract import INPUT_SHAPE, NUM_CLASSES
from mnist_backend.errors import (
    ArchitectureMismatchError,
    ArtifactError,
    ArtifactMissingError,
    CorruptArtifactError,
    ModelCardError,
)

if TYPE_CHECKING:
    from mnist_backend.models.convnet import ConvNet

logger = logging.getLogger(__name__)

RuntimeChoice = Literal["auto", "onnx", "torch"]
ONNX_RUNTIME = "onnx"
TORCH_RUNTIME = "torch"


class _NoOnnxArtifactError(ModelCardError):
    """The model card records no ONNX export at all."""


class RuntimeUnavailableError(ArtifactError):
    """The torch runtime was needed but torch cannot be imported."""

    code = "runtime_unavailable"


class Runtime(Protocol):
    """Something that turns a normalised batch into logits, on the calling thread."""

    @property
    def name(self) -> str: ...

    def infer(self, tensors: np.ndarray) -> np.ndarray:
        """Return float32 logits (N, 10) for float32 tensors (N, 1, 28, 28)."""
        ...

    def describe(self) -> dict[str, str | int]:
        """Return the runtime's name, versions and thread settings for /api/info."""
        ...


@dataclass(frozen=True)
class LoadedRuntime:
    """A ready runtime and the verified artifact and model card it runs."""

    runtime: Runtime
    card: Mapping[str, Any]
    sha256: str
    path: Path
    model_version: str
    temperature: float


class OnnxRuntime:
    """The ConvNet's ONNX export in an ONNX Runtime session on the CPU."""

    name = ONNX_RUNTIME

    def __init__(self, model_bytes: bytes, *, threads: int, artifact_name: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One intra-op thread per worker process: workers, not threads, use the
        # cores, so a busy machine does not make the threads fight over them.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = (
            onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        try:
            self._session = onnxruntime.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise CorruptArtifactError(
                f"ONNX artifact {artifact_name} cannot be loaded by ONNX Runtime."
            ) from exc
        self._threads = threads
        self._version = str(onnxruntime.__version__)
        self._input_name, self._output_name = _check_signature(
            self._session, artifact_name
        )

    def infer(self, tensors: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([self._output_name], {self._input_name: tensors})
        result: np.ndarray = logits
        return result

    def describe(self) -> dict[str, str | int]:
        return {
            "backend": self.name,
            "device": "cpu",
            "onnxruntime_version": self._version,
            "python_version": platform.python_version(),
            "intra_op_threads": self._threads,
        }


class TorchRuntime:
    """The ConvNet in torch eager mode on the CPU."""

    name = TORCH_RUNTIME

    def __init__(self, model: ConvNet, *, threads: int) -> None:
        import torch

        # Intra-op threads are a process-wide torch setting.
        torch.set_num_threads(threads)
        self._torch = torch
        self._model = model

    def infer(self, tensors: np.ndarray) -> np.ndarray:
        torch = self._torch
        # torch.from_numpy shares memory and warns on read-only arrays.
        writable = tensors if tensors.flags.writeable else tensors.copy()
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(writable))
        result: np.ndarray = logits.numpy()
        return result

    def describe(self) -> dict[str, str | int]:
        return {
            "backend": self.name,
            "device": "cpu",
            "torch_version": str(self._torch.__version__),
            "python_version": platform.python_version(),
            "intra_op_threads": self._torch.get_num_threads(),
        }


def load_runtime(
    model_dir: Path, *, choice: RuntimeChoice = "auto", threads: int = 1
) -> LoadedRuntime:
    """Return the verified model in ``model_dir`` on the runtime ``choice`` selects.

    ``auto`` uses ONNX Runtime when the card records an ONNX artifact whose SHA-256
    matches, and torch otherwise (logging why at WARNING when an ONNX artifact was
    recorded but refused). ``onnx`` and ``torch`` use that runtime or fail.

    Raises an ArtifactError subclass naming why the model cannot be served.
    """
    if choice != TORCH_RUNTIME:
        try:
            return load_onnx_runtime(model_dir, threads=threads)
        except ArtifactError as exc:
            if choice == ONNX_RUNTIME:
                raise
            card_has_onnx = not isinstance(exc, _NoOnnxArtifactError)
            logger.log(
                logging.WARNING if card_has_onnx else logging.INFO,
                "ONNX artifact not used; serving with torch",
                extra={"reason": exc.detail, "code": exc.code},
            )
    return load_torch_runtime(model_dir, threads=threads)


def load_onnx_runtime(model_dir: Path, *, threads: int = 1) -> LoadedRuntime:
    """Return an ONNX Runtime session over the card's verified ONNX artifact.

    The bytes are hashed and handed to ONNX Runtime from the same buffer, so the
    file cannot change between the check and the load.
    """
    card = read_model_card(model_dir)
    onnx_entry = card.get("onnx")
    if not isinstance(onnx_entry, dict):
        raise _NoOnnxArtifactError(
            f"Model card in {model_dir} records no 'onnx' artifact; the ONNX "
            "runtime needs one."
        )
    path = _onnx_path(model_dir, onnx_entry)
    model_bytes, sha256 = _read_verified(path, onnx_entry["sha256"])

    runtime = OnnxRuntime(model_bytes, threads=threads, artifact_name=path.name)
    logger.info(
        "ONNX artifact verified",
        extra={"path": str(path), "sha256": sha256},
    )
    return LoadedRuntime(
        runtime=runtime,
        card=card,
        sha256=sha256,
        path=path,
        model_version=card["model_version"],
        temperature=float(card["calibration"]["temperature"]),
    )


def load_torch_runtime(model_dir: Path, *, threads: int = 1) -> LoadedRuntime:
    """Return the verified state dict in torch eager mode.

    Raises RuntimeUnavailableError when torch is not installed.
    """
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "The torch runtime is not installed (pip install 'mnist-backend[torch]'), "
            "and no verified ONNX artifact is available."
        ) from exc

    loaded = load_artifact(model_dir)
    return LoadedRuntime(
        runtime=TorchRuntime(loaded.model, threads=threads),
        card=loaded.card,
        sha256=loaded.sha256,
        path=loaded.path,
        model_version=loaded.model_version,
        temperature=loaded.temperature,
    )


def _onnx_path(model_dir: Path, onnx_entry: Mapping[str, Any]) -> Path:
    file_name = onnx_entry.get("file")
    if not isinstance(file_name, str) or not isinstance(onnx_entry.get("sha256"), str):
        raise ModelCardError(
            f"Model card in {model_dir} lacks 'onnx.file' or 'onnx.sha256'."
        )
    return resolve_artifact_file(model_dir, file_name, "ONNX")


def _read_verified(path: Path, expected_sha256: str) -> tuple[bytes, str]:
    """Return the bytes of ``path`` and their SHA-256, which must match the card."""
    try:
        model_bytes = path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactMissingError(f"ONNX artifact {path} does not exist.") from exc
    except OSError as exc:
        raise ArtifactMissingError(f"ONNX artifact {path} is not readable.") from exc

    actual = hashlib.sha256(model_bytes).hexdigest()
    check_sha256(path, actual, expected_sha256, "ONNX artifact")
    return model_bytes, actual


def _check_signature(session: Any, artifact_name: str) -> tuple[str, str]:
    """Return the input and output names after checking they fit the ConvNet."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    input_shape = list(inputs[0].shape[1:]) if len(inputs) == 1 else None
    output_shape = list(outputs[0].shape[1:]) if len(outputs) == 1 else None
    if input_shape != list(INPUT_SHAPE) or output_shape != [NUM_CLASSES]:
        raise ArchitectureMismatchError(
            f"ONNX artifact {artifact_name} takes {input_shape} and returns "
            f"{output_shape} per image; expected {list(INPUT_SHAPE)} and "
            f"[{NUM_CLASSES}]."
        )
    return str(inputs[0].name), str(outputs[0].name)

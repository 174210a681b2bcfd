"""Choose and load the runtime that executes the ConvNet: ONNX Runtime or torch.

The published model comes as a torch state dict and, optionally, as an ONNX export
and an int8 quantisation of it, each with its SHA-256 in the model card. ONNX Runtime
runs one image in less than half the time and memory of torch eager, and the int8
model in about half the time of the fp32 export again, so ``auto`` serves the most
efficient artifact that is present and verified: int8, then fp32 ONNX, then torch.
torch is imported only when the torch runtime is used, so an ONNX-only install
serves without it. Batching and probabilities are left to ``inference.py``.
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
OnnxPrecision = Literal["auto", "int8", "fp32"]
ArtifactPrecision = Literal["int8", "fp32"]
ONNX_RUNTIME = "onnx"
TORCH_RUNTIME = "torch"
INT8: ArtifactPrecision = "int8"
FP32: ArtifactPrecision = "fp32"
# The model card key of each ONNX artifact, and how messages name the artifact.
_ONNX_CARD_ENTRIES: dict[ArtifactPrecision, tuple[str, str]] = {
    FP32: ("onnx", "ONNX"),
    INT8: ("onnx_int8", "int8 ONNX"),
}


class _NoOnnxArtifactError(ModelCardError):
    """The model card records no ONNX artifact of the precision asked for."""


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
        """Return the runtime's name, precision, versions and threads for /api/info."""
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

    def __init__(
        self,
        model_bytes: bytes,
        *,
        threads: int,
        artifact_name: str,
        precision: ArtifactPrecision = FP32,
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One intra-op thread per worker process: workers, not threads, use the
        # cores, so a busy machine does not make the threads fight over them.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # The graph optimisations fuse the int8 model's quantise/dequantise pairs
        # into integer kernels; without them it would run slower than fp32.
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
        self._precision = precision
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
            "precision": self._precision,
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
            "precision": FP32,
            "device": "cpu",
            "torch_version": str(self._torch.__version__),
            "python_version": platform.python_version(),
            "intra_op_threads": self._torch.get_num_threads(),
        }


def load_runtime(
    model_dir: Path,
    *,
    choice: RuntimeChoice = "auto",
    precision: OnnxPrecision = "auto",
    threads: int = 1,
) -> LoadedRuntime:
    """Return the verified model in ``model_dir`` on the runtime ``choice`` selects.

    ``auto`` uses ONNX Runtime when the card records an ONNX artifact whose SHA-256
    matches, and torch otherwise (logging why at WARNING when an ONNX artifact was
    recorded but refused). ``onnx`` and ``torch`` use that runtime or fail.
    ``precision`` picks the ONNX artifact (see ``load_onnx_runtime``); torch always
    runs fp32, so it never stands in for a demanded ``int8``.

    Raises an ArtifactError subclass naming why the model cannot be served.
    """
    if choice != TORCH_RUNTIME:
        try:
            return load_onnx_runtime(model_dir, precision=precision, threads=threads)
        except ArtifactError as exc:
            if choice == ONNX_RUNTIME or precision == INT8:
                raise
            _log_fallback("ONNX artifact not used; serving with torch", exc)
    return load_torch_runtime(model_dir, threads=threads)


def load_onnx_runtime(
    model_dir: Path, *, precision: OnnxPrecision = "auto", threads: int = 1
) -> LoadedRuntime:
    """Return an ONNX Runtime session over one of the card's verified ONNX artifacts.

    ``auto`` takes the int8 artifact when the card records it and it verifies, and
    the fp32 export otherwise (logging why at WARNING when int8 was recorded but
    refused); ``int8`` and ``fp32`` take that artifact or fail.
    """
    card = read_model_card(model_dir)
    if precision != "auto":
        return _load_onnx_artifact(model_dir, card, precision, threads)
    if not cpu_multiplies_int8_exactly():
        # Without VNNI, x86 kernels add pairs of 8-bit products in saturating
        # 16-bit lanes, so the int8 model's answers could drift from the gated ones.
        logger.warning(
            "int8 ONNX artifact not used on this CPU (no VNNI); serving the fp32 "
            "export; MNIST_ONNX_PRECISION=int8 forces it",
            extra={"machine": platform.machine()},
        )
        return _load_onnx_artifact(model_dir, card, FP32, threads)
    try:
        return _load_onnx_artifact(model_dir, card, INT8, threads)
    except ArtifactError as exc:
        _log_fallback("int8 ONNX artifact not used; serving the fp32 export", exc)
    return _load_onnx_artifact(model_dir, card, FP32, threads)


def cpu_multiplies_int8_exactly(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Return whether ONNX Runtime's int8 kernels on this CPU match the gated ones.

    The int8 artifact is gated on x86 with VNNI, whose dot-product instructions
    accumulate in 32 bits; older x86 kernels may saturate. Other architectures
    (ARM's dot-product kernels) accumulate in 32 bits too.
    """
    if platform.machine().lower() not in {"x86_64", "amd64", "i686", "i386"}:
        return True
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _load_onnx_artifact(
    model_dir: Path,
    card: Mapping[str, Any],
    precision: ArtifactPrecision,
    threads: int,
) -> LoadedRuntime:
    """Return a session over the card's ``precision`` artifact, hashed and loaded
    from the same buffer, so the file cannot change between the check and the load.
    """
    path, expected_sha256 = _onnx_entry(model_dir, card, precision)
    model_bytes, sha256 = _read_verified(path, expected_sha256)

    runtime = OnnxRuntime(
        model_bytes, threads=threads, artifact_name=path.name, precision=precision
    )
    logger.info(
        "ONNX artifact verified",
        extra={"path": str(path), "sha256": sha256, "precision": precision},
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


def _onnx_entry(
    model_dir: Path, card: Mapping[str, Any], precision: ArtifactPrecision
) -> tuple[Path, str]:
    """Return the path and recorded SHA-256 of the card's ``precision`` artifact."""
    key, kind = _ONNX_CARD_ENTRIES[precision]
    entry = card.get(key)
    if not isinstance(entry, dict):
        runtime_needs = "the ONNX runtime" if precision == FP32 else "int8 serving"
        raise _NoOnnxArtifactError(
            f"Model card in {model_dir} records no '{key}' artifact; "
            f"{runtime_needs} needs one."
        )
    file_name, sha256 = entry.get("file"), entry.get("sha256")
    if not isinstance(file_name, str) or not isinstance(sha256, str):
        raise ModelCardError(
            f"Model card in {model_dir} lacks '{key}.file' or '{key}.sha256'."
        )
    if precision == INT8:
        _check_int8_source(model_dir, card, entry)
    return resolve_artifact_file(model_dir, file_name, kind), sha256


def _check_int8_source(
    model_dir: Path, card: Mapping[str, Any], int8_entry: Mapping[str, Any]
) -> None:
    """Refuse an int8 entry unless it was quantised from the card's ONNX export.

    A card edited for a new model but still naming the old int8 file would
    otherwise serve the old model under the new version.
    """
    source = int8_entry.get("quantised_from_sha256")
    onnx_entry = card.get("onnx")
    export_sha256 = onnx_entry.get("sha256") if isinstance(onnx_entry, dict) else None
    if not isinstance(source, str) or source != export_sha256:
        raise ModelCardError(
            f"Model card in {model_dir} records an int8 artifact quantised from "
            f"ONNX export {source!r}, not from the export it names "
            f"({export_sha256!r}); the int8 file belongs to another model."
        )


def _log_fallback(message: str, error: ArtifactError) -> None:
    """Log why an artifact was passed over: WARNING when the card recorded it."""
    was_recorded = not isinstance(error, _NoOnnxArtifactError)
    logger.log(
        logging.WARNING if was_recorded else logging.INFO,
        message,
        extra={"reason": error.detail, "code": error.code},
    )


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

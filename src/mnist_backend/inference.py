"""Turn prepared tensors into calibrated probabilities and hold the model being served.

``Predictor`` runs one verified model on its runtime (ONNX Runtime or torch, chosen
in ``runtimes.py``) and calibrates its logits; ``ModelHolder`` is the one place the
active predictor (or the reason there is none) lives, so a reload can swap it in a
single assignment. Queueing and batching requests is left to ``batching.py``,
decoding uploads to ``preprocessing.py`` and HTTP to ``api/``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_backend.contract import INPUT_SHAPE, NUM_CLASSES
from mnist_backend.errors import (
    ArtifactError,
    ModelUnavailableError,
    NoPreviousModelError,
)
from mnist_backend.runtimes import (
    LoadedRuntime,
    OnnxPrecision,
    RuntimeChoice,
    load_runtime,
)

logger = logging.getLogger(__name__)


class Predictor:
    """Calibrated digit probabilities from one verified model, on the CPU."""

    def __init__(self, loaded: LoadedRuntime) -> None:
        self._loaded = loaded
        self._temperature = np.float32(loaded.temperature)

    @property
    def model_version(self) -> str:
        return self._loaded.model_version

    @property
    def path(self) -> Path:
        """The artifact file the runtime executes."""
        return self._loaded.path

    @property
    def sha256(self) -> str:
        """The SHA-256 of the artifact the runtime executes (ONNX or state dict)."""
        return self._loaded.sha256

    @property
    def card(self) -> Mapping[str, Any]:
        return self._loaded.card

    @property
    def temperature(self) -> float:
        return self._loaded.temperature

    @property
    def runtime_name(self) -> str:
        """The runtime executing the model: "onnx" or "torch"."""
        return self._loaded.runtime.name

    def describe_runtime(self) -> dict[str, str | int]:
        """Return the runtime's name, versions and thread settings."""
        return self._loaded.runtime.describe()

    def predict_batch(self, tensors: np.ndarray) -> np.ndarray:
        """Return probabilities of shape (N, 10), float32, each row summing to 1.

        ``tensors`` is a normalised float32 batch of shape (N, 1, 28, 28). The
        probabilities are softmax(logits / temperature) with the card's temperature.
        Blocks the calling thread; the service calls it from the batcher's thread.
        """
        expected_shape = (tensors.shape[0], *INPUT_SHAPE)
        if tensors.ndim != 4 or tensors.shape != expected_shape:
            raise ValueError(
                f"Expected a batch of shape (N, 1, 28, 28); got {tensors.shape}."
            )
        if tensors.dtype != np.float32:
            raise ValueError(f"Expected float32 tensors; got {tensors.dtype}.")

        logits = self._loaded.runtime.infer(np.ascontiguousarray(tensors))
        return _calibrated_softmax(logits, self._temperature)

    def warm_up(self, batch_sizes: Iterable[int] = (1,)) -> None:
        """Run a blank batch of each size and check the outputs' shape and sums.

        The first call of each shape allocates the runtime's kernels and buffers;
        doing it here keeps that cost off the first requests and proves the model
        runs before the service is ready.
        """
        for size in batch_sizes:
            blank = np.zeros((size, *INPUT_SHAPE), dtype=np.float32)
            probabilities = self.predict_batch(blank)

            is_valid = (
                probabilities.shape == (size, NUM_CLASSES)
                and bool(np.all(np.isfinite(probabilities)))
                and bool(np.all(np.abs(probabilities.sum(axis=1) - 1.0) < 1e-3))
            )
            if not is_valid:
                raise ArtifactError(
                    "The model's warm-up inference did not return 10 finite "
                    "probabilities summing to 1 per image."
                )


def load_predictor(
    model_dir: Path,
    *,
    threads: int = 1,
    runtime: RuntimeChoice = "auto",
    precision: OnnxPrecision = "auto",
    warm_up_batch_sizes: Iterable[int] = (1,),
) -> Predictor:
    """Return a warmed-up predictor for the artifact in ``model_dir``.

    ``runtime`` picks ONNX Runtime or torch and ``precision`` the ONNX artifact
    (see ``runtimes.load_runtime``).
    Raises an ArtifactError subclass when the artifact cannot be trusted or run.
    """
    loaded = load_runtime(
        model_dir, choice=runtime, precision=precision, threads=threads
    )
    predictor = Predictor(loaded)
    predictor.warm_up(warm_up_batch_sizes)
    return predictor


def _calibrated_softmax(logits: np.ndarray, temperature: np.float32) -> np.ndarray:
    """Return softmax(logits / temperature) row by row, as float32."""
    scaled: np.ndarray = np.divide(logits, temperature, dtype=np.float32)
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


@dataclass(frozen=True)
class _HolderState:
    predictor: Predictor | None
    failure: ArtifactError | None
    # The predictor served before the last activation, kept for a rollback.
    previous: Predictor | None = None


class ModelHolder:
    """The active predictor, or why there is none, replaced in one assignment."""

    def __init__(self) -> None:
        self._state = _HolderState(predictor=None, failure=None)

    @property
    def previous(self) -> Predictor | None:
        """The predictor a rollback returns to, or None when there is none."""
        return self._state.previous

    def rollback(self) -> Predictor:
        """Serve the previous predictor again and return it; forget the current one.

        Raises NoPreviousModelError when no previous predictor is kept; a second
        rollback in a row therefore fails until another model is activated.
        """
        state = self._state
        if state.previous is None:
            raise NoPreviousModelError("No previous model is kept to roll back to.")
        self._state = _HolderState(predictor=state.previous, failure=None)
        return state.previous

    @property
    def predictor(self) -> Predictor | None:
        return self._state.predictor

    @property
    def failure(self) -> ArtifactError | None:
        return self._state.failure

    def activate(self, predictor: Predictor) -> None:
        """Serve ``predictor`` from now on; in-flight requests keep the old one.

        The predictor served until now, if any, is kept for ``rollback``.
        """
        previous = self._state.predictor or self._state.previous
        self._state = _HolderState(predictor=predictor, failure=None, previous=previous)

    def fail(self, failure: ArtifactError) -> None:
        """Stop serving and remember why, for readiness checks to report."""
        self._state = _HolderState(predictor=None, failure=failure)

    def require(self) -> Predictor:
        """Return the active predictor, or raise ModelUnavailableError with why not."""
        state = self._state
        if state.predictor is not None:
            return state.predictor
        if state.failure is not None:
            raise ModelUnavailableError(
                f"No validated model is loaded: {state.failure.detail}"
            ) from state.failure
        raise ModelUnavailableError("The model has not been loaded yet.")

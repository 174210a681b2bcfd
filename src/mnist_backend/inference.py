"""Run the verified ConvNet on prepared tensors and hold the model the service serves.

``Predictor`` turns normalised tensors into calibrated probabilities and keeps the
model off the event loop; ``ModelHolder`` is the one place the active predictor (or
the reason there is none) lives, so a reload can swap it in a single assignment.
Decoding uploads is left to ``preprocessing.py`` and HTTP to ``api/``.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import torch

from mnist_backend.artifacts import LoadedModel, load_artifact
from mnist_backend.contract import INPUT_SHAPE, NUM_CLASSES
from mnist_backend.errors import ArtifactError, ModelUnavailableError

logger = logging.getLogger(__name__)

BACKEND_NAME = "torch"


class Predictor:
    """Calibrated digit probabilities from one loaded ConvNet, on the CPU."""

    def __init__(self, loaded: LoadedModel, *, threads: int = 1) -> None:
        self._loaded = loaded
        # Intra-op threads are a process-wide torch setting; concurrency comes from
        # running several requests at once, each on its own thread.
        torch.set_num_threads(threads)
        self._max_concurrency = max(1, (os.cpu_count() or 1) // threads)
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def model_version(self) -> str:
        return self._loaded.model_version

    @property
    def sha256(self) -> str:
        return self._loaded.sha256

    @property
    def card(self) -> Mapping[str, Any]:
        return self._loaded.card

    @property
    def temperature(self) -> float:
        return self._loaded.temperature

    def predict_batch(self, tensors: np.ndarray) -> np.ndarray:
        """Return probabilities of shape (N, 10), float32, each row summing to 1.

        ``tensors`` is a normalised float32 batch of shape (N, 1, 28, 28). The
        probabilities are softmax(logits / temperature) with the card's temperature.
        Blocks the calling thread; async code calls ``predict`` or ``predict_many``.
        """
        expected_shape = (tensors.shape[0], *INPUT_SHAPE)
        if tensors.ndim != 4 or tensors.shape != expected_shape:
            raise ValueError(
                f"Expected a batch of shape (N, 1, 28, 28); got {tensors.shape}."
            )
        if tensors.dtype != np.float32:
            raise ValueError(f"Expected float32 tensors; got {tensors.dtype}.")

        # torch.from_numpy shares memory and warns on read-only arrays.
        batch = torch.from_numpy(tensors if tensors.flags.writeable else tensors.copy())
        with torch.inference_mode():
            logits = self._loaded.model(batch)
            probabilities = torch.softmax(logits / self._loaded.temperature, dim=1)
        result: np.ndarray = probabilities.numpy().astype(np.float32, copy=False)
        return result

    async def predict(self, tensor: np.ndarray) -> np.ndarray:
        """Return the (10,) probabilities for one (1, 28, 28) tensor, off the loop."""
        probabilities = await self.predict_many(tensor[np.newaxis, ...])
        first: np.ndarray = probabilities[0]
        return first

    async def predict_many(self, tensors: np.ndarray) -> np.ndarray:
        """Return (N, 10) probabilities for an (N, 1, 28, 28) batch, off the loop."""
        if self._limiter is None:
            # Created on first use because a limiter belongs to a running event loop.
            self._limiter = anyio.CapacityLimiter(self._max_concurrency)
        return await anyio.to_thread.run_sync(
            partial(self.predict_batch, tensors), limiter=self._limiter
        )

    def warm_up(self) -> None:
        """Run one inference on a blank input and check the output's shape and sum.

        The first call allocates torch's kernels; doing it here keeps that cost off
        the first request and proves the model runs before the service is ready.
        """
        blank = np.zeros((1, *INPUT_SHAPE), dtype=np.float32)
        probabilities = self.predict_batch(blank)

        is_valid = (
            probabilities.shape == (1, NUM_CLASSES)
            and bool(np.all(np.isfinite(probabilities)))
            and abs(float(probabilities.sum()) - 1.0) < 1e-3
        )
        if not is_valid:
            raise ArtifactError(
                "The model's warm-up inference did not return 10 finite "
                "probabilities summing to 1."
            )


def load_predictor(model_dir: Path, *, threads: int = 1) -> Predictor:
    """Return a warmed-up predictor for the artifact in ``model_dir``.

    Raises an ArtifactError subclass when the artifact cannot be trusted or run.
    """
    predictor = Predictor(load_artifact(model_dir), threads=threads)
    predictor.warm_up()
    return predictor


def describe_runtime() -> dict[str, str | int]:
    """Return the inference runtime's versions and thread settings."""
    return {
        "backend": BACKEND_NAME,
        "device": "cpu",
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "intra_op_threads": torch.get_num_threads(),
    }


@dataclass(frozen=True)
class _HolderState:
    predictor: Predictor | None
    failure: ArtifactError | None


class ModelHolder:
    """The active predictor, or why there is none, replaced in one assignment."""

    def __init__(self) -> None:
        self._state = _HolderState(predictor=None, failure=None)

    @property
    def predictor(self) -> Predictor | None:
        return self._state.predictor

    @property
    def failure(self) -> ArtifactError | None:
        return self._state.failure

    def activate(self, predictor: Predictor) -> None:
        """Serve ``predictor`` from now on; in-flight requests keep the old one."""
        self._state = _HolderState(predictor=predictor, failure=None)

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

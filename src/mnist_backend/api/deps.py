"""Dependencies routes declare to reach the settings and the active model.

Tests replace ``get_settings`` through ``app.dependency_overrides``; the model holder
lives on ``app.state`` so a reload can swap the predictor without touching routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request

from mnist_backend.batching import Batcher
from mnist_backend.config import Settings, get_settings
from mnist_backend.inference import ModelHolder, Predictor

# The dependencies are async so FastAPI calls them inline, not on a worker thread.


async def get_model_holder(request: Request) -> ModelHolder:
    """Return the holder of the active model, created by ``create_app``."""
    holder: ModelHolder = request.app.state.model_holder
    return holder


async def get_predictor(
    holder: Annotated[ModelHolder, Depends(get_model_holder)],
) -> Predictor:
    """Return the active predictor; raises ModelUnavailableError (503) without one."""
    return holder.require()


async def get_preprocessing_limiter(request: Request) -> anyio.CapacityLimiter:
    """Return the limiter that bounds how many uploads are decoded at once."""
    limiter: anyio.CapacityLimiter = request.app.state.preprocessing_limiter
    return limiter


async def get_batcher(request: Request) -> Batcher:
    """Return this worker's batcher, which runs every inference."""
    batcher: Batcher = request.app.state.batcher
    return batcher


@dataclass(frozen=True)
class PredictionContext:
    """Everything a prediction route needs, resolved by one dependency."""

    settings: Settings
    holder: ModelHolder
    batcher: Batcher
    preprocessing_limiter: anyio.CapacityLimiter


async def get_prediction_context(request: Request) -> PredictionContext:
    """Return the settings, model holder, batcher and limiter of this app.

    The prediction routes use this one async dependency instead of several: every
    dependency costs FastAPI work on each request, and the synchronous
    ``get_settings`` even a hop to a worker thread, together more CPU than the
    model's inference. The settings are those ``create_app`` resolved, which are
    the ones ``get_settings`` (or a test's override of it) returns.
    """
    state = request.app.state
    return PredictionContext(
        settings=state.settings,
        holder=state.model_holder,
        batcher=state.batcher,
        preprocessing_limiter=state.preprocessing_limiter,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
PredictionContextDep = Annotated[PredictionContext, Depends(get_prediction_context)]
ModelHolderDep = Annotated[ModelHolder, Depends(get_model_holder)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
PreprocessingLimiterDep = Annotated[
    anyio.CapacityLimiter, Depends(get_preprocessing_limiter)
]

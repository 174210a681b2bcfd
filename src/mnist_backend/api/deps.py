"""Dependencies routes declare to reach the settings and the active model.

Tests replace ``get_settings`` through ``app.dependency_overrides``; the model holder
lives on ``app.state`` so a reload can swap the predictor without touching routes.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

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


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelHolderDep = Annotated[ModelHolder, Depends(get_model_holder)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
PreprocessingLimiterDep = Annotated[
    anyio.CapacityLimiter, Depends(get_preprocessing_limiter)
]

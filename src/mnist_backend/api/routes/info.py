"""Service description: version, active model and card, runtime, contract, limits."""

from __future__ import annotations

import os
import platform

from fastapi import APIRouter, Request

from mnist_backend import __version__
from mnist_backend.api.deps import ModelHolderDep, SettingsDep
from mnist_backend.api.schemas import (
    InfoResponse,
    LimitsInfo,
    ModelInfo,
    ReloadReport,
    ServiceInfo,
)
from mnist_backend.contract import describe_preprocessing
from mnist_backend.preprocessing import ACCEPTED_FORMATS

router = APIRouter(prefix="/api", tags=["info"])

SERVICE_NAME = "mnist-backend"


@router.get("/info")
async def describe_service(
    request: Request, holder: ModelHolderDep, settings: SettingsDep
) -> InfoResponse:
    """Describe the service: its version, the active model, runtime and limits.

    `model` holds the active model's version, the SHA-256 of its artifact and its
    full model card (training metrics, calibration, data set), or null while no
    validated model is loaded; `ready` says the same as `/ready`. `runtime.backend`
    names the runtime executing the model: "onnx" (ONNX Runtime) or "torch", or
    "none" while no model is loaded, and `runtime.precision` its arithmetic: "int8"
    (the card's quantised ONNX artifact) or "fp32". `worker_pid` names the worker
    process that answered and `last_reload` what its last model reload or rollback
    did (outcome, reason, model version, time), or null before the first one.
    """
    predictor = holder.predictor
    model = None
    runtime: dict[str, str | int] = {
        "backend": "none",
        "device": "cpu",
        "python_version": platform.python_version(),
        "intra_op_threads": settings.inference_threads,
    }
    if predictor is not None:
        runtime = predictor.describe_runtime()
        model = ModelInfo(
            model_version=predictor.model_version,
            sha256=predictor.sha256,
            card=dict(predictor.card),
        )
    return InfoResponse(
        service=ServiceInfo(name=SERVICE_NAME, version=__version__),
        ready=predictor is not None,
        model=model,
        worker_pid=os.getpid(),
        last_reload=_last_reload(request),
        runtime=runtime,
        input_contract={
            **describe_preprocessing(),
            "accepted_formats": list(ACCEPTED_FORMATS),
        },
        limits=LimitsInfo(
            max_upload_bytes=settings.max_upload_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_batch_files=settings.max_batch_files,
        ),
    )


def _last_reload(request: Request) -> ReloadReport | None:
    result = request.app.state.reloader.last_result
    if result is None:
        return None
    return ReloadReport(**result.as_dict(), worker_pid=os.getpid())

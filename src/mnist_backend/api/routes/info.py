"""Service description: version, active model and card, runtime, contract, limits."""

from __future__ import annotations

from fastapi import APIRouter

from mnist_backend import __version__
from mnist_backend.api.deps import ModelHolderDep, SettingsDep
from mnist_backend.api.schemas import InfoResponse, LimitsInfo, ModelInfo, ServiceInfo
from mnist_backend.contract import describe_preprocessing
from mnist_backend.inference import describe_runtime
from mnist_backend.preprocessing import ACCEPTED_FORMATS

router = APIRouter(prefix="/api", tags=["info"])

SERVICE_NAME = "mnist-backend"


@router.get("/info")
async def describe_service(
    holder: ModelHolderDep, settings: SettingsDep
) -> InfoResponse:
    """Describe the service: its version, the active model, runtime and limits.

    `model` holds the active model's version, the SHA-256 of its artifact and its
    full model card (training metrics, calibration, data set), or null while no
    validated model is loaded; `ready` says the same as `/ready`.
    """
    predictor = holder.predictor
    model = None
    if predictor is not None:
        model = ModelInfo(
            model_version=predictor.model_version,
            sha256=predictor.sha256,
            card=dict(predictor.card),
        )
    return InfoResponse(
        service=ServiceInfo(name=SERVICE_NAME, version=__version__),
        ready=predictor is not None,
        model=model,
        runtime=describe_runtime(),
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

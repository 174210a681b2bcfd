"""Liveness and readiness: is the process answering, and is a model being served."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mnist_backend.api.deps import ModelHolderDep
from mnist_backend.api.schemas import HealthResponse, ReadyResponse, error_responses
from mnist_backend.errors import ModelUnavailableError, ShuttingDownError

router = APIRouter(tags=["health"])

_NOT_READY = {
    503: (
        "No validated model is loaded; the code names the reason.",
        [
            ("artifact_checksum_mismatch", "Model artifact convnet.pt has SHA-256 ..."),
            ("artifact_missing", "Model artifact models/convnet.pt does not exist."),
            (
                "artifact_unsafe",
                "Model artifact convnet.pt holds objects other than tensors.",
            ),
            ("architecture_mismatch", "The state dict does not fit convnet-bn-v1; ..."),
            ("invalid_model_card", "No model card at models/model_card.json."),
            ("model_unavailable", "The model has not been loaded yet."),
            ("shutting_down", "The service is shutting down."),
        ],
    )
}


@router.get("/health")
async def check_health() -> HealthResponse:
    """Answer 200 whenever the process can serve HTTP, with or without a model.

    Use it as a liveness probe: a failure here means the process should be restarted.
    """
    return HealthResponse(status="ok")


@router.get("/ready", responses=error_responses(_NOT_READY))
async def check_ready(request: Request, holder: ModelHolderDep) -> ReadyResponse:
    """Answer 200 once a validated model is loaded and warmed up.

    Answers 503 while no model is served: the body's `code` and `detail` say why
    (for example `artifact_checksum_mismatch` for an artifact whose bytes differ from
    its model card), and with code `shutting_down` from the moment the process
    receives SIGTERM while it finishes the requests in flight. Use it as a
    readiness probe.
    """
    if request.app.state.shutdown.is_shutting_down:
        raise ShuttingDownError(
            "The service is shutting down; it finishes the requests in flight."
        )
    predictor = holder.predictor
    if predictor is not None:
        return ReadyResponse(status="ready", model_version=predictor.model_version)
    if holder.failure is not None:
        raise holder.failure
    raise ModelUnavailableError("The model has not been loaded yet.")

"""Admin API: reload the published model or roll back to the previous one.

Every route needs the bearer token of ``MNIST_ADMIN_TOKEN``; ``create_app`` leaves the
router out entirely while no token is configured. The decisions themselves belong to
``reload.ModelReloader``.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mnist_backend.api.deps import SettingsDep
from mnist_backend.api.schemas import ReloadReport, error_responses
from mnist_backend.errors import (
    AdminTokenInvalidError,
    AdminTokenMissingError,
    ModelRefusedError,
)
from mnist_backend.reload import REFUSED, ModelReloader, ReloadResult

_bearer = HTTPBearer(auto_error=False, description="The MNIST_ADMIN_TOKEN value.")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_admin_token(
    settings: SettingsDep, credentials: BearerCredentials
) -> None:
    """Let the request through only with the configured bearer token.

    Raises AdminTokenMissingError (401) without a bearer token and
    AdminTokenInvalidError (403) with another one.
    """
    if credentials is None or not credentials.credentials:
        raise AdminTokenMissingError(
            "This endpoint needs an 'Authorization: Bearer <token>' header."
        )
    expected = settings.admin_token
    sent = credentials.credentials.encode("utf-8")
    # Constant-time comparison: the time taken reveals nothing about the token.
    if expected is None or not hmac.compare_digest(
        sent, expected.get_secret_value().encode("utf-8")
    ):
        raise AdminTokenInvalidError("The bearer token is not the admin token.")


router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_token)],
)

_AUTH_ERRORS = {
    401: (
        "No bearer token was sent.",
        [("admin_token_missing", "This endpoint needs a bearer token.")],
    ),
    403: (
        "The bearer token is wrong.",
        [("admin_token_invalid", "The bearer token is not the admin token.")],
    ),
}


async def get_reloader(request: Request) -> ModelReloader:
    reloader: ModelReloader = request.app.state.reloader
    return reloader


ReloaderDep = Annotated[ModelReloader, Depends(get_reloader)]


@router.post(
    "/reload",
    responses=error_responses(
        {
            **_AUTH_ERRORS,
            409: (
                "The published model failed a check; the previous model serves on.",
                [("model_refused", "Refused (golden_set_failed): 91.00% ...")],
            ),
        }
    ),
)
async def reload_model(reloader: ReloaderDep) -> ReloadReport:
    """Load the model published in the model directory and serve it if it passes.

    The candidate gets the start-up checks (model card, SHA-256, safe load,
    architecture) and must classify the golden digits at least as well as
    `MNIST_GOLDEN_ACCURACY_FLOOR`; only then does it replace the served model, and
    requests in flight finish on the model they started with. Answers 200 with
    `outcome` "activated", or "unchanged" when that model is already served; the
    other worker processes follow within one poll interval.

    Errors: 401 without a bearer token, 403 with a wrong one, 409 when the candidate
    fails a check (`detail` names it; the previous model keeps serving).
    """
    result = await reloader.reload("admin")
    if result.outcome == REFUSED:
        raise ModelRefusedError(
            f"The published model was refused ({result.code}): {result.reason} "
            "The previous model keeps serving."
        )
    return _report(result)


@router.post(
    "/rollback",
    responses=error_responses(
        {
            **_AUTH_ERRORS,
            409: (
                "No previous model is kept in memory.",
                [("no_previous_model", "No previous model is kept to roll back to.")],
            ),
        }
    ),
)
async def roll_back_model(reloader: ReloaderDep) -> ReloadReport:
    """Serve the model that served before the last reload again.

    Only one previous model is kept, in memory: a second rollback in a row, or a
    rollback before any reload, answers 409 `no_previous_model`. The other worker
    processes follow within one poll interval.

    Errors: 401 without a bearer token, 403 with a wrong one, 409 without a
    previous model.
    """
    return _report(await reloader.rollback("admin"))


def _report(result: ReloadResult) -> ReloadReport:
    return ReloadReport(**result.as_dict(), worker_pid=os.getpid())

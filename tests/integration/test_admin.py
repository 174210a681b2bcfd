"""The admin API: bearer-token access, reload and rollback of the served model."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from mnist_backend.models.convnet import ConvNet

MakeClient = Callable[..., TestClient]
ADMIN_TOKEN = "admin-test-token"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVED_VERSION = "20261203.120000-testtest"
ADMIN_PATHS = ["/api/v1/admin/reload", "/api/v1/admin/rollback"]


def _publish_untrained_model(model_dir: Path, seed: int, version: str) -> None:
    """Replace the model in ``model_dir`` with another seeded, untrained ConvNet."""
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(ConvNet().state_dict(), buffer)
    artifact = buffer.getvalue()
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["model_version"] = version
    card["artifact"]["sha256"] = hashlib.sha256(artifact).hexdigest()
    (model_dir / "convnet.pt").write_bytes(artifact)
    card_path.write_text(json.dumps(card), encoding="utf-8")


@pytest.fixture
def admin_client(make_client: MakeClient) -> TestClient:
    """A client of an app with an admin token, polling off, any accuracy accepted."""
    return make_client(
        admin_token=ADMIN_TOKEN,
        reload_interval_seconds=0,
        golden_accuracy_floor=0.0,
    )


@pytest.mark.parametrize("path", ADMIN_PATHS, ids=["reload", "rollback"])
def test_admin_routes_do_not_exist_without_a_configured_token(
    client: TestClient, path: str
) -> None:
    response = client.post(path, headers=BEARER)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ADMIN_PATHS, ids=["reload", "rollback"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"Authorization": "Bearer "}],
    ids=["no-header", "basic-scheme", "empty-bearer"],
)
def test_admin_request_without_bearer_token_answers_401_with_challenge(
    admin_client: TestClient, path: str, headers: dict[str, str]
) -> None:
    response = admin_client.post(path, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {
        "detail": "This endpoint needs an 'Authorization: Bearer <token>' header.",
        "code": "admin_token_missing",
        "request_id": response.headers["X-Request-ID"],
    }


@pytest.mark.parametrize("path", ADMIN_PATHS, ids=["reload", "rollback"])
@pytest.mark.parametrize(
    "token",
    [ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1], "tökén"],
    ids=["longer", "shorter", "non-ascii"],
)
def test_admin_request_with_wrong_token_answers_403(
    admin_client: TestClient, path: str, token: str
) -> None:
    # Raw bytes, so a non-ASCII token reaches the server as sent.
    authorization = f"Bearer {token}".encode("latin-1")

    response = admin_client.post(path, headers={"Authorization": authorization})

    assert response.status_code == 403
    assert response.json() == {
        "detail": "The bearer token is not the admin token.",
        "code": "admin_token_invalid",
        "request_id": response.headers["X-Request-ID"],
    }


def test_reload_of_the_model_already_served_reports_unchanged(
    admin_client: TestClient,
) -> None:
    response = admin_client.post("/api/v1/admin/reload", headers=BEARER)

    body = response.json()
    assert response.status_code == 200
    assert body == {
        "outcome": "unchanged",
        "reason": "The published model is already served.",
        "model_version": SERVED_VERSION,
        "at": body["at"],
        "trigger": "admin",
        "code": None,
        "worker_pid": os.getpid(),
    }


def test_reload_activates_a_new_model_and_rollback_restores_the_old_one(
    admin_client: TestClient, model_dir: Path
) -> None:
    _publish_untrained_model(model_dir, seed=1, version="20261203.130000-second")

    reloaded = admin_client.post("/api/v1/admin/reload", headers=BEARER)
    served_after_reload = admin_client.get("/ready").json()["model_version"]
    rolled_back = admin_client.post("/api/v1/admin/rollback", headers=BEARER)
    info = admin_client.get("/api/info").json()

    assert (reloaded.status_code, reloaded.json()["outcome"]) == (200, "activated")
    assert served_after_reload == "20261203.130000-second"
    assert rolled_back.status_code == 200
    assert info["model"]["model_version"] == SERVED_VERSION
    assert info["last_reload"] == {**rolled_back.json(), "worker_pid": os.getpid()}
    assert {key: info["last_reload"][key] for key in ("outcome", "trigger")} == {
        "outcome": "rolled_back",
        "trigger": "admin",
    }


def test_reload_refuses_a_model_below_the_golden_floor_with_409(
    make_client: MakeClient, model_dir: Path
) -> None:
    client = make_client(admin_token=ADMIN_TOKEN, reload_interval_seconds=0)
    _publish_untrained_model(model_dir, seed=1, version="20261203.130000-untrained")

    response = client.post("/api/v1/admin/reload", headers=BEARER)
    info = client.get("/api/info").json()

    assert response.status_code == 409
    assert response.json()["code"] == "model_refused"
    assert response.json()["detail"].startswith(
        "The published model was refused (golden_set_failed): The model classifies "
    )
    assert info["model"]["model_version"] == SERVED_VERSION
    assert {
        key: info["last_reload"][key] for key in ("outcome", "code", "model_version")
    } == {
        "outcome": "refused",
        "code": "golden_set_failed",
        "model_version": "20261203.130000-untrained",
    }


def test_rollback_without_a_previous_model_answers_409(
    admin_client: TestClient,
) -> None:
    response = admin_client.post("/api/v1/admin/rollback", headers=BEARER)

    assert response.status_code == 409
    assert response.json() == {
        "detail": "No previous model is kept to roll back to.",
        "code": "no_previous_model",
        "request_id": response.headers["X-Request-ID"],
    }

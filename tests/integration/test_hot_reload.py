"""Hot reload against a real server under load: new models in, bad models out, no
failed request, and every worker process on the same model."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from mnist_backend.models.convnet import ConvNet

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_MODEL_DIR = REPO_ROOT / "models"
ADMIN_TOKEN = "reload-test-token"
FINAL_LAYER = "classifier.5"
WAIT_TIMEOUT_S = 30.0
MIN_REQUESTS = 200

StateDict = dict[str, torch.Tensor]


# Artifacts written the way the training pipeline publishes them.


def _write_atomically(path: Path, payload: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(payload)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _state_dict_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return buffer.getvalue()


def _export_onnx(state: StateDict) -> bytes:
    model = ConvNet()
    model.load_state_dict(state)
    model.eval()
    program = torch.onnx.export(
        model,
        (torch.zeros(2, 1, 28, 28),),
        dynamo=True,
        external_data=False,
        opset_version=18,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
        verbose=False,
    )
    onnx_bytes: bytes = program.model_proto.SerializeToString()
    return onnx_bytes


def _publish(
    model_dir: Path,
    version: str,
    artifact: bytes,
    onnx_artifact: bytes | None = None,
    recorded_sha256: str | None = None,
) -> None:
    """Publish like training does: artifacts first, the card last, each atomically.

    Without ``onnx_artifact`` the card records no ONNX export, so the service runs
    the state dict; ``recorded_sha256`` puts a wrong checksum in the card.
    """
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    card["model_version"] = version
    card["artifact"]["sha256"] = recorded_sha256 or hashlib.sha256(artifact).hexdigest()
    card["artifact"]["bytes"] = len(artifact)
    _write_atomically(model_dir / "convnet.pt", artifact)
    if onnx_artifact is None:
        card.pop("onnx", None)
    else:
        _write_atomically(model_dir / "convnet.onnx", onnx_artifact)
        card["onnx"]["sha256"] = hashlib.sha256(onnx_artifact).hexdigest()
        card["onnx"]["bytes"] = len(onnx_artifact)
    _write_atomically(model_dir / "model_card.json", json.dumps(card).encode())


@dataclass(frozen=True)
class Candidate:
    version: str
    artifact: bytes
    onnx_artifact: bytes


@pytest.fixture(scope="module")
def published_state() -> StateDict:
    return torch.load(
        PUBLISHED_MODEL_DIR / "convnet.pt", weights_only=True, map_location="cpu"
    )


@pytest.fixture(scope="module")
def perturbed_candidate(published_state: StateDict) -> Candidate:
    """A different valid model: the published weights with a little noise."""
    generator = torch.Generator().manual_seed(7)
    state = {
        name: tensor + 1e-3 * torch.randn(tensor.shape, generator=generator)
        if tensor.is_floating_point() and name.endswith("weight")
        else tensor.clone()
        for name, tensor in published_state.items()
    }
    return Candidate(
        version="20261203.190000-perturbed",
        artifact=_state_dict_bytes(state),
        onnx_artifact=_export_onnx(state),
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the published model that tests publish new models into."""
    if not (PUBLISHED_MODEL_DIR / "model_card.json").is_file():
        pytest.fail("the published artifact is missing from models/")
    return Path(shutil.copytree(PUBLISHED_MODEL_DIR, tmp_path / "models"))


def _published_version() -> str:
    card = json.loads((PUBLISHED_MODEL_DIR / "model_card.json").read_text())
    return str(card["model_version"])


# Load while the model changes.


@dataclass
class LoadReport:
    statuses: list[int] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)


async def _send_predictions(
    url: str, upload: bytes, stop: asyncio.Event, report: LoadReport
) -> None:
    """Send predictions from 4 concurrent clients until stopped and enough were sent.

    A transport error counts as status 0: a request that never got an answer.
    """

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set() or len(report.statuses) < MIN_REQUESTS:
            try:
                response = await client.post(
                    "/api/v1/predict", files={"file": ("digit.png", upload)}
                )
            except httpx.TransportError:
                report.statuses.append(0)
                continue
            report.statuses.append(response.status_code)
            if response.status_code == 200:
                report.versions.add(response.json()["model_version"])

    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(4)))


async def _wait_for_info(
    client: httpx.AsyncClient, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        info: dict[str, Any] = (await client.get("/api/info")).json()
        if condition(info):
            return info
        await asyncio.sleep(0.1)
    raise TimeoutError(f"/api/info never met the condition; last: {info}")


def _under_load(
    url: str, upload: bytes, step: Callable[[httpx.AsyncClient], Any]
) -> tuple[LoadReport, Any]:
    """Run ``step`` (an async function of a client) while predictions keep coming."""

    async def scenario() -> tuple[LoadReport, Any]:
        report, stop = LoadReport(), asyncio.Event()
        load = asyncio.create_task(_send_predictions(url, upload, stop, report))
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            await asyncio.sleep(0.3)
            outcome = await step(client)
        stop.set()
        await load
        return report, outcome

    return asyncio.run(scenario())


@pytest.fixture
def upload(mnist_test_digits: list[tuple[bytes, int]]) -> bytes:
    return mnist_test_digits[0][0]


SERVER_ENV = {
    "MNIST_RELOAD_INTERVAL_SECONDS": "0.2",
    "MNIST_ADMIN_TOKEN": ADMIN_TOKEN,
    "MNIST_GOLDEN_ACCURACY_FLOOR": "0.97",
}


def test_published_model_is_served_without_a_failed_request(
    start_server: Any, model_dir: Path, perturbed_candidate: Candidate, upload: bytes
) -> None:
    server = start_server(model_dir, env=SERVER_ENV, arguments=["--workers", "1"])
    new = perturbed_candidate

    async def publish_and_wait(client: httpx.AsyncClient) -> dict[str, Any]:
        _publish(model_dir, new.version, new.artifact, new.onnx_artifact)
        info = await _wait_for_info(
            client, lambda info: info["model"]["model_version"] == new.version
        )
        await asyncio.sleep(0.5)
        return info

    report, info = _under_load(server.url, upload, publish_and_wait)

    assert set(report.statuses) == {200}
    assert len(report.statuses) >= MIN_REQUESTS
    assert report.versions == {_published_version(), new.version}
    assert {key: info["last_reload"][key] for key in ("outcome", "trigger")} == {
        "outcome": "activated",
        "trigger": "poll",
    }
    assert info["model"]["sha256"] == hashlib.sha256(new.onnx_artifact).hexdigest()


def test_rollback_returns_to_the_previous_model_without_a_failed_request(
    start_server: Any, model_dir: Path, perturbed_candidate: Candidate, upload: bytes
) -> None:
    server = start_server(model_dir, env=SERVER_ENV, arguments=["--workers", "1"])
    new = perturbed_candidate
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def reload_then_roll_back(client: httpx.AsyncClient) -> list[Any]:
        _publish(model_dir, new.version, new.artifact, new.onnx_artifact)
        reloaded = await client.post("/api/v1/admin/reload", headers=headers)
        rolled_back = await client.post("/api/v1/admin/rollback", headers=headers)
        again = await client.post("/api/v1/admin/rollback", headers=headers)
        info = (await client.get("/api/info")).json()
        return [reloaded, rolled_back, again, info]

    report, (reloaded, rolled_back, again, info) = _under_load(
        server.url, upload, reload_then_roll_back
    )

    assert set(report.statuses) == {200}
    assert (reloaded.status_code, reloaded.json()["outcome"]) == (200, "activated")
    assert (rolled_back.status_code, rolled_back.json()["model_version"]) == (
        200,
        _published_version(),
    )
    assert (again.status_code, again.json()["code"]) == (409, "no_previous_model")
    assert info["model"]["model_version"] == _published_version()
    assert info["last_reload"]["outcome"] == "rolled_back"


def _truncated(state: StateDict) -> tuple[bytes, str | None]:
    """Half of a valid artifact, its checksum recorded: a file cut off mid-copy."""
    artifact = _state_dict_bytes(state)
    return artifact[: len(artifact) // 2], None


def _mismatched(state: StateDict) -> tuple[bytes, str | None]:
    return _state_dict_bytes(state), "0" * 64


def _shuffled_final_layer(state: StateDict) -> tuple[bytes, str | None]:
    """The published weights with the digit rows of the last layer rotated by one:
    a well-formed model that names the wrong digit for nearly every image."""
    rotated = dict(state)
    for suffix in ("weight", "bias"):
        name = f"{FINAL_LAYER}.{suffix}"
        rotated[name] = torch.roll(state[name], shifts=1, dims=0)
    return _state_dict_bytes(rotated), None


@pytest.mark.parametrize(
    ("make_candidate", "expected_code"),
    [
        (_truncated, "artifact_corrupt"),
        (_mismatched, "artifact_checksum_mismatch"),
        (_shuffled_final_layer, "golden_set_failed"),
    ],
    ids=["truncated", "checksum-mismatch", "fails-golden-set"],
)
def test_refused_candidate_leaves_the_old_model_serving(
    start_server: Any,
    model_dir: Path,
    published_state: StateDict,
    upload: bytes,
    make_candidate: Callable[[StateDict], tuple[bytes, str | None]],
    expected_code: str,
) -> None:
    server = start_server(model_dir, env=SERVER_ENV, arguments=["--workers", "1"])
    artifact, recorded_sha256 = make_candidate(published_state)

    async def publish_and_wait(client: httpx.AsyncClient) -> dict[str, Any]:
        _publish(model_dir, "20261203.190000-bad", artifact, None, recorded_sha256)
        return await _wait_for_info(
            client, lambda info: info["last_reload"] is not None
        )

    report, info = _under_load(server.url, upload, publish_and_wait)

    assert set(report.statuses) == {200}
    assert report.versions == {_published_version()}
    assert info["model"]["model_version"] == _published_version()
    assert {
        key: info["last_reload"][key]
        for key in ("outcome", "code", "model_version", "trigger")
    } == {
        "outcome": "refused",
        "code": expected_code,
        "model_version": "20261203.190000-bad",
        "trigger": "poll",
    }


def _request_counts(metrics_text: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "mnist_http_requests"
        for sample in family.samples
        if sample.name == "mnist_http_requests_total"
        and sample.labels["route"] == route
    )


def _served_models(metrics_text: str) -> dict[str, str]:
    """Return {pid: model_version} of the models the workers mark as active."""
    return {
        sample.labels["pid"]: sample.labels["model_version"]
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "mnist_model_info"
        for sample in family.samples
        if sample.value == 1
    }


def test_two_workers_converge_on_a_reloaded_model_and_merge_metrics(
    start_server: Any, model_dir: Path, perturbed_candidate: Candidate
) -> None:
    # Card polling off: the second worker can learn of the reload only from the
    # state file the first one writes.
    env = {**SERVER_ENV, "MNIST_RELOAD_INTERVAL_SECONDS": "0"}
    server = start_server(model_dir, env=env, arguments=["--workers", "2"])
    new = perturbed_candidate
    _publish(model_dir, new.version, new.artifact, new.onnx_artifact)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    reloaded = httpx.post(f"{server.url}/api/v1/admin/reload", headers=headers)
    versions_by_pid: dict[int, str] = {}
    info_requests = 0
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        # A new connection each time, so the kernel spreads them over the workers.
        info = httpx.get(f"{server.url}/api/info").json()
        info_requests += 1
        versions_by_pid[info["worker_pid"]] = info["model"]["model_version"]
        if len(versions_by_pid) == 2 and set(versions_by_pid.values()) == {new.version}:
            break
        time.sleep(0.05)
    metrics_text = httpx.get(f"{server.url}/metrics").text

    assert reloaded.json()["outcome"] == "activated"
    assert list(versions_by_pid.values()) == [new.version, new.version]
    assert _served_models(metrics_text) == {
        str(pid): new.version for pid in versions_by_pid
    }
    assert _request_counts(metrics_text, "/api/info") == info_requests

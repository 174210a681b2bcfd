"""ModelReloader: when a candidate is loaded, what refuses it, how workers agree."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import runpy
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_backend.errors import NoPreviousModelError
from mnist_backend.golden import load_golden_set, score_golden_set
from mnist_backend.inference import ModelHolder, Predictor, load_predictor
from mnist_backend.reload import ModelReloader

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_VERSION = "20261203.120000-testtest"

load_torch_predictor = partial(load_predictor, runtime="torch")


def _publish(model_dir: Path, seed: int, version: str, *, sha256: str = "") -> None:
    """Publish a seeded untrained ConvNet like training does: card last, atomically.

    A non-empty ``sha256`` is recorded in the card instead of the real checksum.
    """
    from mnist_backend.models.convnet import ConvNet

    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(ConvNet().state_dict(), buffer)
    artifact = buffer.getvalue()
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    card["model_version"] = version
    card["artifact"]["sha256"] = sha256 or hashlib.sha256(artifact).hexdigest()
    (model_dir / "convnet.pt").write_bytes(artifact)
    staged = model_dir / ".model_card.json.new"
    staged.write_text(json.dumps(card), encoding="utf-8")
    os.replace(staged, model_dir / "model_card.json")


class CountingLoader:
    """Loads with the torch runtime and counts how often it was asked to."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model_dir: Path) -> Predictor:
        self.calls += 1
        return load_torch_predictor(model_dir)


MakeReloader = Callable[..., tuple[ModelReloader, ModelHolder, CountingLoader]]


@pytest.fixture
def make_reloader(model_dir: Path) -> MakeReloader:
    """Return a function building a reloader over ``model_dir``, its model loaded."""

    def make(
        *,
        floor: float = 0.0,
        interval: float = 1.0,
        run_dir: Path | None = None,
    ) -> tuple[ModelReloader, ModelHolder, CountingLoader]:
        holder, loader = ModelHolder(), CountingLoader()
        reloader = ModelReloader(
            holder,
            loader,
            model_dir,
            accuracy_floor=floor,
            interval_seconds=interval,
            run_dir=run_dir,
        )
        reloader.remember_card()
        holder.activate(load_torch_predictor(model_dir))
        return reloader, holder, loader

    return make


def _served_version(holder: ModelHolder) -> str | None:
    return holder.predictor.model_version if holder.predictor else None


def test_reload_activates_the_new_model_and_keeps_the_old_one_for_rollback(
    make_reloader: MakeReloader, model_dir: Path
) -> None:
    reloader, holder, _ = make_reloader()
    _publish(model_dir, seed=1, version="v2")

    result = asyncio.run(reloader.reload("admin"))

    assert (result.outcome, result.model_version) == ("activated", "v2")
    assert _served_version(holder) == "v2"
    assert holder.previous is not None
    assert holder.previous.model_version == FIRST_VERSION


def test_reload_of_the_model_already_served_is_unchanged_and_loads_nothing(
    make_reloader: MakeReloader,
) -> None:
    reloader, holder, loader = make_reloader()

    result = asyncio.run(reloader.reload("admin"))

    assert (result.outcome, result.model_version) == ("unchanged", FIRST_VERSION)
    assert loader.calls == 0
    assert holder.previous is None


@pytest.mark.parametrize(
    ("floor", "recorded_sha256", "expected_code"),
    [
        (0.97, "", "golden_set_failed"),
        (0.0, "0" * 64, "artifact_checksum_mismatch"),
    ],
    ids=["below-golden-floor", "checksum-mismatch"],
)
def test_refused_candidate_leaves_the_old_model_serving(
    make_reloader: MakeReloader,
    model_dir: Path,
    floor: float,
    recorded_sha256: str,
    expected_code: str,
) -> None:
    reloader, holder, _ = make_reloader(floor=floor)
    _publish(model_dir, seed=1, version="v2", sha256=recorded_sha256)

    result = asyncio.run(reloader.reload("admin"))

    assert (result.outcome, result.code, result.model_version) == (
        "refused",
        expected_code,
        "v2",
    )
    assert _served_version(holder) == FIRST_VERSION
    assert reloader.last_result == result


def test_poll_loads_only_when_the_model_card_is_replaced(
    make_reloader: MakeReloader, model_dir: Path
) -> None:
    reloader, holder, loader = make_reloader()

    async def poll_publish_poll_poll() -> None:
        await reloader.poll_once()
        _publish(model_dir, seed=1, version="v2")
        await reloader.poll_once()
        await reloader.poll_once()

    asyncio.run(poll_publish_poll_poll())

    assert loader.calls == 1
    assert _served_version(holder) == "v2"


def test_poll_does_not_retry_a_refused_card_until_it_is_replaced(
    make_reloader: MakeReloader, model_dir: Path
) -> None:
    reloader, holder, loader = make_reloader()

    async def publish_bad_then_good() -> int:
        _publish(model_dir, seed=1, version="bad", sha256="0" * 64)
        await reloader.poll_once()
        await reloader.poll_once()
        calls_while_refused = loader.calls
        _publish(model_dir, seed=2, version="good")
        await reloader.poll_once()
        return calls_while_refused

    calls_while_refused = asyncio.run(publish_bad_then_good())

    assert (calls_while_refused, loader.calls) == (1, 2)
    assert _served_version(holder) == "good"


def test_rollback_without_a_previous_model_raises(
    make_reloader: MakeReloader,
) -> None:
    reloader, _, _ = make_reloader()

    with pytest.raises(NoPreviousModelError):
        asyncio.run(reloader.rollback("admin"))


def test_other_worker_follows_a_reload_and_a_rollback_through_the_run_dir(
    make_reloader: MakeReloader, model_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Card polling off: only the shared state file can tell worker B.
    first, first_holder, _ = make_reloader(interval=0, run_dir=run_dir)
    second, second_holder, _ = make_reloader(interval=0, run_dir=run_dir)
    _publish(model_dir, seed=1, version="v2")

    async def reload_then_roll_back() -> list[str | None]:
        await first.reload("admin")
        await second.poll_once()
        after_reload = _served_version(second_holder)
        await first.rollback("admin")
        await second.poll_once()
        return [after_reload, _served_version(second_holder)]

    served_by_second = asyncio.run(reload_then_roll_back())

    assert served_by_second == ["v2", FIRST_VERSION]
    assert _served_version(first_holder) == FIRST_VERSION
    assert second.last_result is not None
    assert (second.last_result.outcome, second.last_result.trigger) == (
        "rolled_back",
        "sync",
    )


def test_golden_set_holds_thirty_normalised_digits_of_each_class() -> None:
    golden = load_golden_set()

    counts = np.bincount(golden.labels, minlength=10)
    assert counts.tolist() == [30] * 10
    assert golden.tensors.shape == (300, 1, 28, 28)
    assert golden.tensors.dtype == np.float32
    # Background pixels (0) map to -mean/std after normalisation.
    assert float(golden.tensors.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_bundled_golden_set_is_what_the_script_builds(tmp_path: Path) -> None:
    script = runpy.run_path(str(REPO_ROOT / "scripts" / "build_golden_set.py"))
    rebuilt = tmp_path / "golden.npz"

    script["build_golden_set"](script["DEFAULT_MNIST_DIR"], rebuilt)

    bundled = REPO_ROOT / "src" / "mnist_backend" / "golden" / "golden_digits.npz"
    assert rebuilt.read_bytes() == bundled.read_bytes()


def test_published_model_clears_the_default_golden_floor() -> None:
    predictor = load_torch_predictor(REPO_ROOT / "models")

    accuracy = score_golden_set(predictor.predict_batch, load_golden_set())

    assert accuracy >= 0.97

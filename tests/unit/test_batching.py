from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from mnist_backend.batching import Batcher, InferenceResult
from mnist_backend.errors import (
    DeadlineExceededError,
    ModelUnavailableError,
    OverloadedError,
    ShuttingDownError,
)
from mnist_backend.inference import ModelHolder

# Only a hang guard: a broken batcher fails the test instead of blocking the suite.
HANG_GUARD_SECONDS = 10.0
FAILING_MARKER = 99


class FakeModel:
    """A predictor whose row i is the marker value its tensor i was filled with.

    With ``hold_first_batch`` the first batch blocks until ``release()``, so a test
    can queue requests while the model is busy.
    """

    def __init__(self, model_version: str = "v1", *, hold_first_batch: bool = False):
        self.model_version = model_version
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self._gate = threading.Event()
        if not hold_first_batch:
            self._gate.set()

    def release(self) -> None:
        self._gate.set()

    def predict_batch(self, tensors: np.ndarray) -> np.ndarray:
        markers = [int(tensor[0, 0, 0]) for tensor in tensors]
        self.batches.append(markers)
        self.started.set()
        self._gate.wait(HANG_GUARD_SECONDS)
        if FAILING_MARKER in markers:
            raise RuntimeError("the model failed on this batch")
        return np.array([[marker] * 10 for marker in markers], dtype=np.float32)

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


class RecordingObserver:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.depths: list[int] = []
        self.rejected: list[str] = []

    def on_batch(
        self, size: int, queue_wait_seconds: list[float], inference_seconds: float
    ) -> None:
        self.batches.append((size, len(queue_wait_seconds)))

    def on_queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def on_rejected(self, reason: str) -> None:
        self.rejected.append(reason)


def tensor(marker: int) -> np.ndarray:
    return np.full((1, 28, 28), marker, dtype=np.float32)


def marker_of(result: InferenceResult) -> int:
    return int(result.probabilities[0])


def holder_of(model: FakeModel) -> ModelHolder:
    holder = ModelHolder()
    holder.activate(model)  # type: ignore[arg-type]
    return holder


Scenario = Callable[[], Coroutine[Any, Any, None]]


def run(scenario: Scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_SECONDS))


async def wait_until_model_busy(model: FakeModel) -> None:
    await asyncio.to_thread(model.started.wait, HANG_GUARD_SECONDS)


async def outcomes(*calls: Awaitable[InferenceResult]) -> list[int | str]:
    """Return each call's marker, or the name of the exception it raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [
        type(result).__name__
        if isinstance(result, BaseException)
        else marker_of(result)
        for result in results
    ]


def test_each_caller_gets_the_row_of_its_own_tensor() -> None:
    model = FakeModel(hold_first_batch=True)
    found: list[int | str] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model))
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        queued = [batcher.predict(tensor(marker)) for marker in (5, 3, 8, 1)]
        model.release()
        found.extend(await outcomes(first, *queued))
        await batcher.close()

    run(scenario)

    assert found == [0, 5, 3, 8, 1]
    assert model.batches == [[0], [5, 3, 8, 1]]


def test_lone_request_reaches_the_model_at_once_as_a_batch_of_one() -> None:
    model = FakeModel()
    reached_model: list[bool] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), max_batch_size=32)
        batcher.start()
        lone = asyncio.ensure_future(batcher.predict(tensor(7)))
        await asyncio.sleep(0)
        # Blocks the event loop: a batcher that waited for company or for a batch
        # window timer could not hand the request over while the loop stands still.
        reached_model.append(model.started.wait(HANG_GUARD_SECONDS))
        await lone
        await batcher.close()

    run(scenario)

    assert reached_model == [True]
    assert model.batches == [[7]]


def test_requests_arriving_while_busy_are_coalesced_up_to_the_max_size() -> None:
    model = FakeModel(hold_first_batch=True)

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), max_batch_size=3)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        queued = [batcher.predict(tensor(marker)) for marker in range(1, 8)]
        model.release()
        await outcomes(first, *queued)
        await batcher.close()

    run(scenario)

    assert model.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]


def test_a_failing_batch_fails_only_its_own_requests() -> None:
    model = FakeModel(hold_first_batch=True)
    found: list[int | str] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model))
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        doomed = [batcher.predict(tensor(FAILING_MARKER)), batcher.predict(tensor(2))]
        model.release()
        found.extend(await outcomes(first, *doomed))
        found.extend(await outcomes(batcher.predict(tensor(3))))
        await batcher.close()

    run(scenario)

    assert found == [0, "RuntimeError", "RuntimeError", 3]
    assert model.batches == [[0], [FAILING_MARKER, 2], [3]]


def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    model = FakeModel(hold_first_batch=True)
    observer = RecordingObserver()
    refused: list[OverloadedError] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), max_queue_size=2, observer=observer)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        queued = [asyncio.ensure_future(batcher.predict(tensor(n))) for n in (1, 2)]
        await asyncio.sleep(0)
        try:
            await batcher.predict(tensor(3))
        except OverloadedError as exc:
            refused.append(exc)
        model.release()
        await outcomes(first, *queued)
        await batcher.close()

    run(scenario)

    assert [(error.code, error.retry_after_seconds) for error in refused] == [
        ("overloaded", 1)
    ]
    assert observer.rejected == ["overloaded"]
    assert model.batches == [[0], [1, 2]]


def test_predict_many_is_refused_whole_when_the_queue_lacks_room() -> None:
    model = FakeModel(hold_first_batch=True)

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), max_queue_size=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        with pytest.raises(OverloadedError):
            await batcher.predict_many([tensor(1), tensor(2), tensor(3)])
        model.release()
        await first
        await batcher.close()

    run(scenario)

    assert model.batches == [[0]]


def test_a_request_still_queued_at_its_deadline_fails_without_running() -> None:
    model = FakeModel(hold_first_batch=True)
    observer = RecordingObserver()
    found: list[int | str] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), deadline_seconds=0.05, observer=observer)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        found.extend(await outcomes(batcher.predict(tensor(1))))
        model.release()
        found.extend(await outcomes(first))
        await batcher.close()

    run(scenario)

    assert found == [DeadlineExceededError.__name__, 0]
    assert observer.rejected == ["deadline_exceeded"]
    assert model.batches == [[0]]


def test_requests_queued_at_different_times_each_expire_at_their_own_deadline() -> None:
    model = FakeModel(hold_first_batch=True)
    observer = RecordingObserver()
    states: dict[str, object] = {}

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), deadline_seconds=0.2, observer=observer)
        batcher.start()
        running = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        early = asyncio.ensure_future(batcher.predict(tensor(1)))
        await asyncio.sleep(0.1)
        late = asyncio.ensure_future(batcher.predict(tensor(2)))
        states["early"] = await outcomes(early)
        # The later request still has half its wait left when the first expires.
        states["late done when early expired"] = late.done()
        states["late"] = await outcomes(late)
        model.release()
        states["running"] = await outcomes(running)
        # With the queue drained, a new request is served, not left unwatched.
        states["after"] = await outcomes(batcher.predict(tensor(3)))
        await batcher.close()

    run(scenario)

    assert states == {
        "early": [DeadlineExceededError.__name__],
        "late done when early expired": False,
        "late": [DeadlineExceededError.__name__],
        "running": [0],
        "after": [3],
    }
    assert observer.rejected == ["deadline_exceeded", "deadline_exceeded"]
    assert model.batches == [[0], [3]]


def test_each_batch_takes_the_model_active_when_it_starts() -> None:
    old_model = FakeModel("v1", hold_first_batch=True)
    new_model = FakeModel("v2")
    holder = holder_of(old_model)
    versions: list[str] = []

    async def scenario() -> None:
        batcher = Batcher(holder)
        batcher.start()
        in_flight = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(old_model)
        holder.activate(new_model)  # type: ignore[arg-type]
        queued = asyncio.ensure_future(batcher.predict(tensor(1)))
        old_model.release()
        versions.extend([(await in_flight).model_version, (await queued).model_version])
        await batcher.close()

    run(scenario)

    assert versions == ["v1", "v2"]
    assert (old_model.batches, new_model.batches) == ([[0]], [[1]])


def test_without_a_model_requests_fail_as_unavailable() -> None:
    found: list[int | str] = []

    async def scenario() -> None:
        batcher = Batcher(ModelHolder())
        batcher.start()
        found.extend(await outcomes(batcher.predict(tensor(0))))
        await batcher.close()

    run(scenario)

    assert found == [ModelUnavailableError.__name__]


def test_observer_sees_each_batch_and_the_queue_depth_once_per_loop_pass() -> None:
    model = FakeModel(hold_first_batch=True)
    observer = RecordingObserver()

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), observer=observer)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        queued = [asyncio.ensure_future(batcher.predict(tensor(n))) for n in (1, 2)]
        await asyncio.sleep(0)
        model.release()
        await outcomes(first, *queued)
        await batcher.close()

    run(scenario)

    assert observer.batches == [(1, 1), (2, 2)]
    # The first request is queued and taken in one pass (0), the next two wait (2),
    # then their batch takes them (0).
    assert observer.depths == [0, 2, 0]


def test_a_closed_batcher_refuses_new_requests() -> None:
    model = FakeModel()
    found: list[int | str] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model))
        batcher.start()
        await batcher.close()
        found.extend(await outcomes(batcher.predict(tensor(0))))

    run(scenario)

    assert found == [ShuttingDownError.__name__]
    assert model.batches == []


class FailingObserver(RecordingObserver):
    def on_batch(
        self, size: int, queue_wait_seconds: list[float], inference_seconds: float
    ) -> None:
        raise RuntimeError("the observer failed")


def test_a_failing_observer_neither_stalls_nor_fails_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FakeModel(hold_first_batch=True)
    found: list[int | str] = []

    async def scenario() -> None:
        batcher = Batcher(holder_of(model), observer=FailingObserver())
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(tensor(0)))
        await wait_until_model_busy(model)
        queued = batcher.predict(tensor(1))
        model.release()
        found.extend(await outcomes(first, queued))
        found.extend(await outcomes(batcher.predict(tensor(2))))
        await batcher.close()

    run(scenario)

    assert found == [0, 1, 2]
    assert [record.message for record in caplog.records] == [
        "batch observer failed"
    ] * 3

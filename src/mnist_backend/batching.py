"""Adaptive batching: one inference thread per process, fed from a bounded queue.

An idle model takes a request at once: there is no batch window, so a lone request
never waits for company. Requests that arrive while a batch runs wait in a bounded
queue and go together, up to ``max_batch_size``, into the next batch. A full queue
refuses new requests at once (``OverloadedError``) instead of letting latency grow,
and a request still queued when its deadline passes fails with
``DeadlineExceededError``. Each batch takes the model from the ``ModelHolder`` when
it starts, so a swapped model serves from the next batch on while a running batch
finishes on the model it started with. Decoding uploads is left to the routes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mnist_backend.errors import (
    DeadlineExceededError,
    ModelUnavailableError,
    OverloadedError,
    ShuttingDownError,
)
from mnist_backend.inference import ModelHolder, Predictor

logger = logging.getLogger(__name__)

OVERLOADED = "overloaded"
DEADLINE_EXCEEDED = "deadline_exceeded"


class BatchObserver(Protocol):
    """Receives batching telemetry; every call happens on the event loop's thread."""

    def on_batch(
        self, size: int, queue_wait_seconds: list[float], inference_seconds: float
    ) -> None:
        """A batch of ``size`` requests ran; each waited this long in the queue."""

    def on_queue_depth(self, depth: int) -> None:
        """The number of queued requests changed to ``depth``."""

    def on_rejected(self, reason: str) -> None:
        """A request was refused: "overloaded" or "deadline_exceeded"."""


@dataclass(frozen=True)
class InferenceResult:
    """One request's (10,) probabilities and the version of the model that ran it."""

    probabilities: np.ndarray
    model_version: str


class _Request:
    """One queued tensor, its caller's future and its deadline."""

    __slots__ = ("deadline", "enqueued_at", "future", "is_queued", "tensor")

    def __init__(
        self,
        tensor: np.ndarray,
        future: asyncio.Future[InferenceResult],
        enqueued_at: float,
        deadline: float,
    ) -> None:
        self.tensor = tensor
        self.future = future
        self.enqueued_at = enqueued_at
        self.deadline = deadline
        # True from enqueueing until a batch takes it or its deadline passes.
        self.is_queued = True


@dataclass(frozen=True)
class _Batch:
    requests: list[_Request]
    predictor: Predictor
    started_at: float


class Batcher:
    """Queues tensors from async callers and runs them in batches on one thread.

    Create it inside the running event loop, ``start()`` it before the first request
    and ``await close()`` it at shutdown.
    """

    def __init__(
        self,
        holder: ModelHolder,
        *,
        max_batch_size: int = 32,
        max_queue_size: int = 256,
        deadline_seconds: float = 2.0,
        retry_after_seconds: int = 1,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or deadline_seconds <= 0:
            raise ValueError(
                "max_batch_size and max_queue_size must be at least 1 and "
                "deadline_seconds positive."
            )
        self._holder = holder
        self._max_batch_size = max_batch_size
        self._max_queue_size = max_queue_size
        self._deadline_seconds = deadline_seconds
        self._retry_after_seconds = retry_after_seconds
        self._observer = observer
        self._queue: deque[_Request] = deque()
        # Requests in the queue that are neither taken nor expired. An expired one
        # stays in the deque until a batch skips it, but leaves this count at once.
        self._queued = 0
        self._running: _Batch | None = None
        # One timer, for the deadline of the oldest queued request: every request
        # waits the same time, so the queue's head always expires first.
        self._deadline_timer: asyncio.TimerHandle | None = None
        # Queue-depth reports wait for the end of the loop's pass, so a burst of
        # arrivals costs the observer one call instead of one per request.
        self._depth_report_pending = False
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run_batches, name="inference", daemon=True
        )

    @property
    def queue_depth(self) -> int:
        """The number of requests waiting for a batch (not counting a running one)."""
        return self._queued

    def start(self) -> None:
        """Start the inference thread."""
        self._thread.start()

    async def close(self) -> None:
        """Refuse new requests, let queued batches finish, then stop the thread."""
        self._closed = True
        await self._idle.wait()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self._thread.is_alive():
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)

    async def predict(self, tensor: np.ndarray) -> InferenceResult:
        """Return the probabilities of one (1, 28, 28) float32 tensor.

        Raises OverloadedError when the queue is full, DeadlineExceededError when
        the deadline passes before its batch starts, ModelUnavailableError when no
        model is loaded when its batch starts, and whatever the model raised.
        """
        (future,) = self._enqueue([tensor])
        return await future

    async def predict_many(
        self, tensors: Sequence[np.ndarray]
    ) -> list[InferenceResult]:
        """Return the probabilities of each (1, 28, 28) tensor, in order.

        All of them are queued or none: a queue without room for every tensor
        raises OverloadedError. Raises what ``predict`` raises.
        """
        futures = self._enqueue(tensors)
        return list(await asyncio.gather(*futures))

    def _enqueue(
        self, tensors: Sequence[np.ndarray]
    ) -> list[asyncio.Future[InferenceResult]]:
        if self._closed:
            raise ShuttingDownError("The service is shutting down.")
        if self._queued + len(tensors) > self._max_queue_size:
            self._notify_rejected(OVERLOADED)
            raise OverloadedError(
                f"The inference queue is full ({self._queued} waiting); "
                f"retry in {self._retry_after_seconds} s.",
                retry_after_seconds=self._retry_after_seconds,
            )

        loop = self._loop
        now = loop.time()
        futures = []
        for tensor in tensors:
            future: asyncio.Future[InferenceResult] = loop.create_future()
            self._queue.append(
                _Request(tensor, future, now, now + self._deadline_seconds)
            )
            futures.append(future)
        self._queued += len(tensors)
        self._notify_depth()
        if self._deadline_timer is None:
            self._arm_deadline_timer()

        if self._running is None:
            self._dispatch()
        return futures

    def _arm_deadline_timer(self) -> None:
        """Wake at the deadline of the oldest request still queued, if any."""
        for request in self._queue:
            if request.is_queued:
                self._deadline_timer = self._loop.call_at(
                    request.deadline, self._expire_overdue
                )
                return

    def _expire_overdue(self) -> None:
        """Fail every queued request whose deadline has passed; re-arm for the next."""
        self._deadline_timer = None
        now = self._loop.time()
        while self._queue and (
            not self._queue[0].is_queued or self._queue[0].deadline <= now
        ):
            request = self._queue.popleft()
            self._expire(request)
        self._arm_deadline_timer()

    def _expire(self, request: _Request) -> None:
        """Fail a request whose deadline passed while it was still queued."""
        if not request.is_queued:
            return
        request.is_queued = False
        self._queued -= 1
        if request.future.done():
            # Its caller gave up already (a cancelled future); only the count moves.
            self._notify_depth()
            return
        request.future.set_exception(
            DeadlineExceededError(
                f"The request waited {self._deadline_seconds:g} s for the model "
                "without reaching it."
            )
        )
        self._notify_rejected(DEADLINE_EXCEEDED)
        self._notify_depth()

    def _take_batch(self) -> list[_Request]:
        """Pop up to max_batch_size requests whose callers still wait."""
        requests: list[_Request] = []
        now = self._loop.time()
        while self._queue and len(requests) < self._max_batch_size:
            request = self._queue.popleft()
            if request.is_queued and now >= request.deadline:
                # The deadline passed while the loop was busy, before its timer ran.
                self._expire(request)
            if not request.is_queued or request.future.done():
                # Expired, or cancelled by a caller that went away.
                self._take_out(request)
                continue
            self._take_out(request)
            requests.append(request)
        return requests

    def _take_out(self, request: _Request) -> None:
        if request.is_queued:
            request.is_queued = False
            self._queued -= 1

    def _dispatch(self) -> None:
        """Start the next batch on the inference thread, if anything is queued."""
        while True:
            requests = self._take_batch()
            if not requests:
                self._running = None
                self._idle.set()
                return
            self._notify_depth()
            try:
                predictor = self._holder.require()
            except ModelUnavailableError as exc:
                for request in requests:
                    request.future.set_exception(exc)
                continue
            batch = _Batch(requests, predictor, self._loop.time())
            self._running = batch
            self._idle.clear()
            self._jobs.put(batch)
            return

    def _run_batches(self) -> None:
        """Inference thread: run each batch handed over, one at a time."""
        while (batch := self._jobs.get()) is not None:
            started = time.perf_counter()
            try:
                tensors = np.stack([request.tensor for request in batch.requests])
                outcome: np.ndarray | BaseException = batch.predictor.predict_batch(
                    tensors
                )
            except Exception as exc:
                outcome = exc
            inference_seconds = time.perf_counter() - started
            self._loop.call_soon_threadsafe(
                self._finish, batch, outcome, inference_seconds
            )

    def _finish(
        self,
        batch: _Batch,
        outcome: np.ndarray | BaseException,
        inference_seconds: float,
    ) -> None:
        """Give each caller its row (or the batch's error); start the next batch."""
        model_version = batch.predictor.model_version
        for index, request in enumerate(batch.requests):
            if request.future.done():
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(
                    InferenceResult(outcome[index], model_version)
                )

        # The next batch starts before telemetry, so nothing an observer does can
        # delay or stall the queue.
        self._dispatch()
        if self._observer is not None:
            waits = [
                batch.started_at - request.enqueued_at for request in batch.requests
            ]
            with self._observer_failures():
                self._observer.on_batch(len(batch.requests), waits, inference_seconds)

    def _notify_depth(self) -> None:
        if self._observer is not None and not self._depth_report_pending:
            self._depth_report_pending = True
            self._loop.call_soon(self._report_depth)

    def _report_depth(self) -> None:
        self._depth_report_pending = False
        if self._observer is not None:
            with self._observer_failures():
                self._observer.on_queue_depth(self._queued)

    def _notify_rejected(self, reason: str) -> None:
        if self._observer is not None:
            with self._observer_failures():
                self._observer.on_rejected(reason)

    @contextmanager
    def _observer_failures(self) -> Iterator[None]:
        """Log an observer's failure instead of letting it break batching."""
        try:
            yield
        except Exception:
            logger.exception("batch observer failed")

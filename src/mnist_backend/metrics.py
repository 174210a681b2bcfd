"""Prometheus metrics of the service, recorded cheaply and exposed from every worker.

This module owns the metric names, their labels and buckets, the ASGI middleware that
times each request, and the exposition (``render_metrics``), which merges every
worker's values when ``mnist-backend serve`` runs several processes. It also observes
the inference batcher through ``on_batch``, ``on_queue_depth`` and ``on_rejected``.
Which requests exist and what they return is the routes' business.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_backend.logs import current_access_fields

# Read by prometheus-client itself when it is first imported; `mnist-backend serve`
# sets it for its workers, so it is an input of the library, not a service setting.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# The route label of a request no route matched: raw paths would be unbounded.
UNMATCHED_ROUTE = "unmatched"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
QUEUE_WAIT_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
# Bounds the request-series cache, which odd methods could otherwise grow.
_MAX_CACHED_SERIES = 1024
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


def multiprocess_dir() -> Path | None:
    """Return the directory workers share their values in, or None in one process."""
    configured = os.environ.get(MULTIPROC_DIR_VARIABLE)
    return Path(configured) if configured else None


class ServiceMetrics:
    """Every metric of one service process, registered in ``registry``.

    Besides the request and model metrics it implements the batcher's observer
    (``on_batch``, ``on_queue_depth``, ``on_rejected``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        request_labels = ("method", "route", "status")
        self.requests = Counter(
            "mnist_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            request_labels,
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "mnist_http_request_duration_seconds",
            "Time from the request's arrival to its last response byte.",
            request_labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "mnist_http_rejections_total",
            "Requests answered with an error, by status and error code.",
            ("status", "code"),
            registry=self.registry,
        )
        self.predictions = Counter(
            "mnist_predictions_total",
            "Digits predicted, by predicted digit.",
            ("digit",),
            registry=self.registry,
        )
        self.confidence = Histogram(
            "mnist_prediction_confidence",
            "Calibrated probability of each predicted digit (0-1).",
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "mnist_inference_batch_size",
            "Images per model call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "mnist_inference_queue_wait_seconds",
            "Time each image waited in the queue before its model call.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "mnist_inference_duration_seconds",
            "Time of one model call on a batch.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "mnist_inference_queue_depth",
            "Images waiting for the model, summed over live workers.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.inference_rejections = Counter(
            "mnist_inference_rejections_total",
            "Images the batcher refused or dropped, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "mnist_model_info",
            "1 for the model a worker serves (0 for models it served before).",
            ("model_version", "sha256", "runtime"),
            registry=self.registry,
            # One series per live worker (pid label), so each worker's model shows.
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "mnist_model_reloads_total",
            "Model reload and rollback attempts, by trigger and outcome.",
            ("trigger", "outcome"),
            registry=self.registry,
        )
        self.refusals = Counter(
            "mnist_model_refusals_total",
            "Candidate models refused by a reload, by the failed check's code.",
            ("code",),
            registry=self.registry,
        )
        self._active_model: tuple[str, str, str] | None = None
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # One child per digit, looked up once rather than through labels() each time.
        self._digit_counters = [
            self.predictions.labels(str(digit)) for digit in range(10)
        ]

    def observe_request(
        self,
        method: str,
        route: str,
        status: int,
        seconds: float,
        fields: Mapping[str, object],
    ) -> None:
        """Record one answered request; ``fields`` are its access-line annotations."""
        series = self._request_series.get((method, route, status))
        if series is None:
            series = self._request_series_for(method, route, status)
        series[0].inc()
        series[1].observe(seconds)
        if status >= 400:
            code = fields.get("error_code")
            self.rejections.labels(str(status), str(code or "unknown")).inc()
        self._observe_predictions(fields)

    def _request_series_for(
        self, method: str, route: str, status: int
    ) -> tuple[Any, Any]:
        """Return (and cache) the counter and histogram children of one label set.

        Looking a child up through ``labels()`` takes a lock and a good part of the
        per-request cost; label sets are few (routes x statuses), so they are cached.
        """
        method_label = method if method in _KNOWN_METHODS else "OTHER"
        labels = (method_label, route, str(status))
        series = (
            self.requests.labels(*labels),
            self.request_duration.labels(*labels),
        )
        if len(self._request_series) < _MAX_CACHED_SERIES:
            self._request_series[(method, route, status)] = series
        return series

    def _observe_predictions(self, fields: Mapping[str, object]) -> None:
        digit, confidence = fields.get("digit"), fields.get("confidence")
        if isinstance(digit, int) and isinstance(confidence, float):
            self.observe_prediction(digit, confidence)
        digits, confidences = fields.get("digits"), fields.get("confidences")
        if isinstance(digits, list) and isinstance(confidences, list):
            for each_digit, each_confidence in zip(digits, confidences, strict=True):
                self.observe_prediction(int(each_digit), float(each_confidence))

    def observe_prediction(self, digit: int, confidence: float) -> None:
        """Count one predicted digit and its calibrated confidence."""
        self._digit_counters[digit].inc()
        self.confidence.observe(confidence)

    def on_batch(
        self, size: int, queue_wait_seconds: Sequence[float], inference_seconds: float
    ) -> None:
        """Record one model call on ``size`` images and how long each one waited."""
        self.batch_size.observe(size)
        for wait in queue_wait_seconds:
            self.queue_wait.observe(wait)
        self.inference_duration.observe(inference_seconds)

    def on_queue_depth(self, depth: int) -> None:
        """Record how many images wait for the model right now."""
        self.queue_depth.set(depth)

    def on_rejected(self, reason: str) -> None:
        """Count one image the batcher refused (for example a full queue)."""
        self.inference_rejections.labels(reason).inc()

    def set_active_model(self, model_version: str, sha256: str, runtime: str) -> None:
        """Mark the model this process serves from now on in ``mnist_model_info``."""
        # Multiprocess values live in files that outlast a removed label set, so the
        # model served before is set to 0 rather than removed.
        if self._active_model is not None:
            self.model_info.labels(*self._active_model).set(0)
        self._active_model = (model_version, sha256, runtime)
        self.model_info.labels(*self._active_model).set(1)

    def count_reload(self, trigger: str, outcome: str, code: str | None = None) -> None:
        """Count one reload or rollback; ``code`` names the failed check if refused."""
        self.reloads.labels(trigger, outcome).inc()
        if code is not None:
            self.refusals.labels(code).inc()


def render_metrics(metrics: ServiceMetrics) -> bytes:
    """Return the exposition text: every worker's values in multiprocess mode."""
    directory = multiprocess_dir()
    if directory is None:
        return bytes(generate_latest(metrics.registry))
    # A fresh registry per scrape: the collector reads the workers' files each time.
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
        registry, path=str(directory)
    )
    return bytes(generate_latest(registry))


def mark_worker_exited(pid: int) -> None:
    """Drop the live gauges of worker ``pid`` (queue depth, model info) on its exit."""
    directory = multiprocess_dir()
    if directory is not None:
        prometheus_multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            pid, path=str(directory)
        )


class MetricsMiddleware:
    """Time every HTTP request and record it under its route template and status.

    Sits inside the request-context middleware, so the access-line fields (digit,
    confidence, error code) the request gathered are still there when it ends.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            # The router stores the matched route in the scope; its path is the
            # template ("/api/v1/predict"), never the raw path a client chose.
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.observe_request(
                scope["method"],
                template,
                status,
                time.perf_counter() - started,
                current_access_fields(),
            )

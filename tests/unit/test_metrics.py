"""ServiceMetrics and MetricsMiddleware: what each observation adds to which series."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mnist_backend.logs import RequestContextMiddleware, annotate_access
from mnist_backend.metrics import MetricsMiddleware, ServiceMetrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(metrics: ServiceMetrics) -> Samples:
    """Return every exposed sample as {(name, sorted labels): value}."""
    text = generate_latest(metrics.registry).decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics() -> ServiceMetrics:
    """Metrics in a registry of their own, so no test sees another's values."""
    return ServiceMetrics()


def test_request_is_counted_and_timed_by_method_route_and_status(
    metrics: ServiceMetrics,
) -> None:
    labels = {"method": "POST", "route": "/api/v1/predict", "status": "200"}

    metrics.observe_request("POST", "/api/v1/predict", 200, 0.004, {})
    metrics.observe_request("POST", "/api/v1/predict", 200, 0.3, {})

    samples = _samples(metrics)
    assert _value(samples, "mnist_http_requests_total", **labels) == 2
    assert _value(samples, "mnist_http_request_duration_seconds_count", **labels) == 2
    assert _value(
        samples, "mnist_http_request_duration_seconds_sum", **labels
    ) == pytest.approx(0.304)
    bucket = "mnist_http_request_duration_seconds_bucket"
    assert _value(samples, bucket, **labels, le="0.005") == 1
    assert _value(samples, bucket, **labels, le="0.25") == 1
    assert _value(samples, bucket, **labels, le="0.5") == 2


def test_unknown_http_method_is_labelled_other(metrics: ServiceMetrics) -> None:
    metrics.observe_request("BREW", "unmatched", 405, 0.001, {})

    samples = _samples(metrics)
    assert (
        _value(
            samples,
            "mnist_http_requests_total",
            method="OTHER",
            route="unmatched",
            status="405",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (413, "upload_too_large"),
        (415, "unsupported_media_type"),
        (422, "no_digit_found"),
        (503, "overloaded"),
    ],
    ids=["413", "415", "422", "503"],
)
def test_error_response_is_counted_as_rejection_with_its_code(
    metrics: ServiceMetrics, status: int, code: str
) -> None:
    metrics.observe_request(
        "POST", "/api/v1/predict", status, 0.01, {"error_code": code}
    )

    samples = _samples(metrics)
    assert (
        _value(samples, "mnist_http_rejections_total", status=str(status), code=code)
        == 1
    )


def test_success_is_not_counted_as_rejection(metrics: ServiceMetrics) -> None:
    metrics.observe_request("GET", "/health", 200, 0.001, {})

    samples = _samples(metrics)
    rejections = [key for key in samples if key[0] == "mnist_http_rejections_total"]
    assert rejections == []


def test_predictions_are_counted_by_digit_with_their_confidence(
    metrics: ServiceMetrics,
) -> None:
    metrics.observe_request(
        "POST", "/api/v1/predict", 200, 0.01, {"digit": 7, "confidence": 0.98}
    )
    metrics.observe_request(
        "POST",
        "/api/v1/predict/batch",
        200,
        0.01,
        {"digits": [7, 3], "confidences": [0.55, 0.999]},
    )

    samples = _samples(metrics)
    assert _value(samples, "mnist_predictions_total", digit="7") == 2
    assert _value(samples, "mnist_predictions_total", digit="3") == 1
    assert _value(samples, "mnist_prediction_confidence_count") == 3
    assert _value(samples, "mnist_prediction_confidence_bucket", le="0.6") == 1
    assert _value(samples, "mnist_prediction_confidence_bucket", le="0.99") == 2


def test_batch_observer_records_size_queue_waits_depth_and_rejections(
    metrics: ServiceMetrics,
) -> None:
    metrics.on_batch(3, [0.0002, 0.003, 0.02], 0.004)
    metrics.on_queue_depth(5)
    metrics.on_rejected("overloaded")

    samples = _samples(metrics)
    assert _value(samples, "mnist_inference_batch_size_count") == 1
    assert _value(samples, "mnist_inference_batch_size_sum") == 3
    assert _value(samples, "mnist_inference_queue_wait_seconds_count") == 3
    assert _value(samples, "mnist_inference_queue_wait_seconds_bucket", le="0.001") == 1
    assert _value(samples, "mnist_inference_duration_seconds_count") == 1
    assert _value(samples, "mnist_inference_queue_depth") == 5
    assert _value(samples, "mnist_inference_rejections_total", reason="overloaded") == 1


def test_model_info_marks_only_the_model_served_now(metrics: ServiceMetrics) -> None:
    metrics.set_active_model("v1", "a" * 64, "onnx")
    metrics.set_active_model("v2", "b" * 64, "torch")

    samples = _samples(metrics)
    info = {
        dict(labels)["model_version"]: (dict(labels)["runtime"], value)
        for (name, labels), value in samples.items()
        if name == "mnist_model_info"
    }
    assert info == {"v1": ("onnx", 0), "v2": ("torch", 1)}


def test_reloads_are_counted_by_trigger_and_outcome_with_refusal_codes(
    metrics: ServiceMetrics,
) -> None:
    metrics.count_reload("poll", "activated")
    metrics.count_reload("poll", "refused", "golden_set_failed")

    samples = _samples(metrics)
    reloads = "mnist_model_reloads_total"
    assert _value(samples, reloads, trigger="poll", outcome="activated") == 1
    assert _value(samples, reloads, trigger="poll", outcome="refused") == 1
    assert _value(samples, "mnist_model_refusals_total", code="golden_set_failed") == 1


async def _item(request: Request) -> JSONResponse:
    annotate_access(digit=4, confidence=0.9)
    return JSONResponse({"item": request.path_params["item_id"]})


async def _boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


@pytest.fixture
def tiny_client(metrics: ServiceMetrics) -> TestClient:
    """A bare app with a templated route, wrapped like the service wraps its app."""
    app = Starlette(routes=[Route("/items/{item_id}", _item), Route("/boom", _boom)])
    wrapped = RequestContextMiddleware(MetricsMiddleware(app, metrics))
    return TestClient(wrapped, raise_server_exceptions=False)


def test_middleware_labels_requests_with_the_route_template_not_the_raw_path(
    tiny_client: TestClient, metrics: ServiceMetrics
) -> None:
    for item_id in ("1", "2", "three"):
        tiny_client.get(f"/items/{item_id}")
    tiny_client.get("/no/such/path")

    samples = _samples(metrics)
    requests = {
        dict(labels)["route"]: value
        for (name, labels), value in samples.items()
        if name == "mnist_http_requests_total"
    }
    assert requests == {"/items/{item_id}": 3, "unmatched": 1}
    assert _value(samples, "mnist_predictions_total", digit="4") == 3


def test_middleware_counts_an_unhandled_exception_as_500(
    tiny_client: TestClient, metrics: ServiceMetrics
) -> None:
    tiny_client.get("/boom")

    samples = _samples(metrics)
    assert (
        _value(
            samples,
            "mnist_http_requests_total",
            method="GET",
            route="/boom",
            status="500",
        )
        == 1
    )

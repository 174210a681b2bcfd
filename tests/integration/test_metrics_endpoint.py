"""GET /metrics through the whole app: what known requests leave in the exposition."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(client: TestClient) -> Samples:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_are_served_in_the_prometheus_text_format(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE mnist_http_request_duration_seconds histogram" in response.text


def test_metrics_count_known_requests_by_route_template_and_status(
    client: TestClient, seven_png: bytes
) -> None:
    for _ in range(2):
        client.post("/api/v1/predict", files={"file": ("7.png", seven_png)})
    client.post("/api/v1/predict", files={"file": ("notes.txt", b"hello")})
    client.get("/api/v1/predict/../../etc/passwd")

    samples = _scrape(client)

    predict = {"method": "POST", "route": "/api/v1/predict"}
    assert _value(samples, "mnist_http_requests_total", **predict, status="200") == 2
    assert _value(samples, "mnist_http_requests_total", **predict, status="415") == 1
    assert (
        _value(
            samples,
            "mnist_http_request_duration_seconds_count",
            **predict,
            status="200",
        )
        == 2
    )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert _value(samples, "mnist_http_requests_total", **unmatched) == 1
    rejections = {
        dict(labels)["code"]: (dict(labels)["status"], value)
        for (name, labels), value in samples.items()
        if name == "mnist_http_rejections_total"
    }
    assert rejections == {
        "unsupported_media_type": ("415", 1),
        "not_found": ("404", 1),
    }


def test_metrics_count_predictions_by_digit_and_batches(
    client: TestClient, seven_png: bytes
) -> None:
    single = client.post("/api/v1/predict", files={"file": ("7.png", seven_png)})
    batch = client.post(
        "/api/v1/predict/batch",
        files=[("files", ("a.png", seven_png)), ("files", ("b.png", seven_png))],
    )
    digit = str(single.json()["prediction"])

    samples = _scrape(client)

    assert batch.json()["succeeded"] == 2
    assert _value(samples, "mnist_predictions_total", digit=digit) == 3
    assert _value(samples, "mnist_prediction_confidence_count") == 3
    assert _value(samples, "mnist_inference_batch_size_count") == 2
    assert _value(samples, "mnist_inference_batch_size_sum") == 3
    assert _value(samples, "mnist_inference_queue_wait_seconds_count") == 3
    assert _value(samples, "mnist_inference_queue_depth") == 0


def test_model_info_names_the_served_model_version_checksum_and_runtime(
    client: TestClient,
) -> None:
    info = client.get("/api/info").json()

    samples = _scrape(client)

    served = {
        "model_version": info["model"]["model_version"],
        "sha256": info["model"]["sha256"],
        "runtime": info["runtime"]["backend"],
    }
    assert _value(samples, "mnist_model_info", **served) == 1

"""The published model in models/, served end to end, reads real MNIST digits."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from .conftest import PUBLISHED_MODEL_DIR

# The published model scores above 99 % on the MNIST test set; on its first 20
# digits a single miss would already be unusual, two would mean a serving fault
# such as inverted polarity or wrong normalisation.
MIN_CORRECT_OF_20 = 19


def test_published_model_reads_mnist_test_digits_through_predict(
    published_client: TestClient, mnist_test_digits: list[tuple[bytes, int]]
) -> None:
    predictions = [
        published_client.post(
            "/api/v1/predict", files={"file": ("digit.png", upload, "image/png")}
        ).json()["prediction"]
        for upload, _ in mnist_test_digits
    ]

    correct = sum(
        prediction == label
        for prediction, (_, label) in zip(predictions, mnist_test_digits, strict=True)
    )
    labels = [label for _, label in mnist_test_digits]
    assert correct >= MIN_CORRECT_OF_20, (predictions, labels)


def test_published_model_reads_mnist_test_digits_through_batch(
    published_client: TestClient, mnist_test_digits: list[tuple[bytes, int]]
) -> None:
    files = [
        ("files", (f"{index}.png", upload, "image/png"))
        for index, (upload, _) in enumerate(mnist_test_digits)
    ]

    response = published_client.post("/api/v1/predict/batch", files=files)

    predictions = [item["result"]["prediction"] for item in response.json()["results"]]
    labels = [label for _, label in mnist_test_digits]
    correct = sum(
        prediction == label
        for prediction, label in zip(predictions, labels, strict=True)
    )
    assert (response.status_code, len(predictions)) == (200, 20)
    assert correct >= MIN_CORRECT_OF_20, (predictions, labels)


def test_published_model_is_ready_with_its_card_version(
    published_client: TestClient,
) -> None:
    info = published_client.get("/api/info").json()

    ready = published_client.get("/ready")

    assert (ready.status_code, ready.json()["model_version"]) == (
        200,
        info["model"]["card"]["model_version"],
    )


def test_published_model_is_served_from_its_verified_int8_artifact(
    published_client: TestClient,
) -> None:
    info = published_client.get("/api/info").json()

    int8 = info["model"]["card"]["onnx_int8"]
    int8_bytes = (PUBLISHED_MODEL_DIR / int8["file"]).read_bytes()
    assert (info["runtime"]["backend"], info["runtime"]["precision"]) == (
        "onnx",
        "int8",
    )
    assert (int8["file"], info["model"]["sha256"]) == (
        "convnet.int8.onnx",
        hashlib.sha256(int8_bytes).hexdigest(),
    )
    assert int8["metrics"]["test_size"] == 10000
    assert int8["metrics"]["argmax_agreement_with_torch"] >= 0.998

"""The playground page driven in Chromium against a running service and real model."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Page, Request, expect

pytestmark = pytest.mark.browser

DrawDigit = Callable[[Page, str], None]

# Longer than the page's pause after a stroke before it sends the drawing.
LONGER_THAN_PREDICT_DELAY_MS = 1000
CONFIDENCE_TEXT = re.compile(r"^[<>]?\d{1,3}\.\d% confident$")
PERCENT_TEXT = re.compile(r"^[<>]?\d{1,3}\.\d%$")
NO_DIGIT_MESSAGE = (
    "No digit found. Draw a digit on the canvas, or upload a picture of one."
)


def _record_predict_requests(page: Page) -> list[str]:
    sent: list[str] = []

    def remember(request: Request) -> None:
        if "/api/v1/predict" in request.url:
            sent.append(request.url)

    page.on("request", remember)
    return sent


def _canvas_is_blank(page: Page) -> bool:
    return bool(
        page.evaluate(
            """() => {
                const canvas = document.getElementById("canvas");
                const { data } = canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height);
                return data.every((value) => value === 255);
            }"""
        )
    )


@pytest.mark.parametrize("digit", ["1", "7", "0", "4"], ids=lambda d: f"drawn-{d}")
def test_drawn_digit_is_predicted(
    page: Page, draw_digit: DrawDigit, digit: str
) -> None:
    draw_digit(page, digit)

    expect(page.locator("#prediction-digit")).to_have_text(digit)
    expect(page.locator("#prediction-confidence")).to_have_text(CONFIDENCE_TEXT)


def test_drawing_is_sent_as_multipart_upload_asking_for_the_model_input(
    page: Page, draw_digit: DrawDigit
) -> None:
    with page.expect_response("**/api/v1/predict*") as captured:
        draw_digit(page, "1")

    response = captured.value
    request = response.request
    assert request.method == "POST"
    assert request.url.endswith("/api/v1/predict?include_input=true")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert response.status == 200
    assert response.json()["input_image"].startswith("iVBORw0KGgo")


def test_prediction_shows_a_bar_per_digit_with_the_top_one_marked(
    page: Page, draw_digit: DrawDigit
) -> None:
    draw_digit(page, "7")

    expect(page.locator("#prediction-digit")).to_have_text("7")
    bars = page.locator("#probability-bars li")
    expect(bars).to_have_count(10)
    expect(bars.locator(".bar-label")).to_have_text([str(d) for d in range(10)])
    expect(page.locator("#probability-bars li.top")).to_have_attribute(
        "data-digit", "7"
    )
    for value in bars.locator(".bar-value").all_text_contents():
        assert PERCENT_TEXT.match(value), value


def test_model_input_preview_is_the_28_by_28_image_enlarged_without_smoothing(
    page: Page, draw_digit: DrawDigit
) -> None:
    draw_digit(page, "7")
    preview = page.locator("#model-input")
    expect(preview).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    preview.evaluate("(image) => image.decode()")

    natural_size = preview.evaluate(
        "(image) => [image.naturalWidth, image.naturalHeight]"
    )
    rendering = preview.evaluate("(image) => getComputedStyle(image).imageRendering")
    box = preview.bounding_box()

    assert natural_size == [28, 28]
    assert rendering == "pixelated"
    assert box is not None
    assert box["width"] >= 4 * 28


def test_clear_empties_the_result_and_sends_nothing(
    page: Page, draw_digit: DrawDigit
) -> None:
    draw_digit(page, "7")
    expect(page.locator("#prediction-digit")).to_have_text("7")
    sent = _record_predict_requests(page)

    page.get_by_role("button", name="Clear").click()
    page.wait_for_timeout(LONGER_THAN_PREDICT_DELAY_MS)

    expect(page.locator("#prediction")).to_be_hidden()
    expect(page.locator("#probability-bars")).to_be_hidden()
    expect(page.locator("#prediction-digit")).to_have_text("")
    expect(page.locator("#status")).to_have_text("")
    expect(page.locator("#result-placeholder")).to_be_visible()
    assert _canvas_is_blank(page)
    assert sent == []


def test_undo_of_the_only_stroke_empties_canvas_and_result(
    page: Page, draw_digit: DrawDigit
) -> None:
    draw_digit(page, "1")
    expect(page.locator("#prediction-digit")).to_have_text("1")

    page.get_by_role("button", name="Undo").click()

    expect(page.locator("#prediction")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("")
    expect(page.get_by_role("button", name="Undo")).to_have_attribute(
        "aria-disabled", "true"
    )
    assert _canvas_is_blank(page)


def test_predicting_a_blank_canvas_shows_the_no_digit_message(page: Page) -> None:
    page.get_by_role("button", name="Predict").click()

    status = page.locator("#status")
    expect(status.locator(".status-message")).to_have_text(NO_DIGIT_MESSAGE)
    expect(status).to_have_attribute("data-kind", "error")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status.locator(".status-detail")).to_contain_text("Service: ")
    expect(page.locator("#prediction")).to_be_hidden()


def test_uploaded_scan_of_a_digit_is_predicted(
    page: Page, scanned_mnist_digit: tuple[bytes, int]
) -> None:
    upload, label = scanned_mnist_digit
    scan: FilePayload = {"name": "scan.png", "mimeType": "image/png", "buffer": upload}

    page.locator("#upload-input").set_input_files(files=[scan])

    expect(page.locator("#prediction-digit")).to_have_text(str(label))
    expect(page.locator("#model-input")).to_have_attribute(
        "src", re.compile(r"^data:image/png;base64,")
    )


def test_dropped_image_is_predicted(
    page: Page, scanned_mnist_digit: tuple[bytes, int]
) -> None:
    upload, label = scanned_mnist_digit
    transfer = page.evaluate_handle(
        """(bytes) => {
            const transfer = new DataTransfer();
            const file = new File([new Uint8Array(bytes)], "dropped.png",
                                  { type: "image/png" });
            transfer.items.add(file);
            return transfer;
        }""",
        list(upload),
    )

    page.dispatch_event("#drop-zone", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})

    expect(page.locator("#prediction-digit")).to_have_text(str(label))
    expect(page.locator("#drop-zone")).not_to_have_class(re.compile("dragging"))


def test_upload_of_a_text_file_shows_the_unsupported_type_message(page: Page) -> None:
    notes: FilePayload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"7"}

    page.locator("#upload-input").set_input_files(files=[notes])

    status = page.locator("#status")
    expect(status.locator(".status-message")).to_have_text(
        "That file is not an image the service can read. Use a PNG, JPEG, WEBP, "
        "BMP, GIF or TIFF image."
    )
    expect(status).to_have_attribute("data-kind", "error")


def test_unreachable_service_shows_a_connection_message(
    page: Page, draw_digit: DrawDigit
) -> None:
    page.route("**/api/v1/predict*", lambda route: route.abort("connectionrefused"))

    draw_digit(page, "1")

    status = page.locator("#status")
    expect(status.locator(".status-message")).to_have_text(
        "Could not reach the service. Check the connection and try again."
    )
    expect(status).to_have_attribute("data-kind", "error")
    expect(page.locator("#prediction")).to_be_hidden()


def test_model_version_and_test_accuracy_are_shown(
    page: Page, published_card: dict[str, Any]
) -> None:
    version = published_card["model_version"]
    accuracy = published_card["metrics"]["test_accuracy"]

    expected = f"Model {version} · test accuracy {accuracy * 100:.2f}%"

    expect(page.locator("#model-info")).to_have_text(expected)


def test_buttons_are_reachable_with_tab_in_reading_order(page: Page) -> None:
    focused = []
    for _ in range(6):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate(
                "() => document.activeElement.id || document.activeElement.textContent"
            )
        )

    assert focused == [
        "API reference",
        "brush-size",
        "predict-button",
        "undo-button",
        "clear-button",
        "upload-button",
    ]


def test_keyboard_focus_is_visible_on_buttons(page: Page) -> None:
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")

    outline = page.locator("#predict-button").evaluate(
        "(button) => { const style = getComputedStyle(button);"
        " return [style.outlineStyle, style.outlineWidth]; }"
    )

    assert outline == ["solid", "3px"]


def test_page_fits_a_phone_screen_without_sideways_scrolling(phone_page: Page) -> None:
    page_width = phone_page.evaluate("() => document.documentElement.scrollWidth")
    canvas = phone_page.locator("#canvas").bounding_box()

    assert page_width == 390
    assert canvas is not None
    assert 300 <= canvas["width"] <= 390


def test_digit_drawn_with_a_finger_is_predicted(
    phone_page: Page, touch_digit: DrawDigit, screenshot_dir: Path
) -> None:
    touch_digit(phone_page, "7")

    expect(phone_page.locator("#prediction-digit")).to_have_text("7")
    phone_page.screenshot(
        path=str(screenshot_dir / "playground-phone.png"), full_page=True
    )


def test_prediction_page_shows_result_preview_and_model_together(
    page: Page, draw_digit: DrawDigit, screenshot_dir: Path
) -> None:
    draw_digit(page, "7")

    expect(page.locator("#prediction-digit")).to_have_text("7")
    expect(page.locator("#model-input")).to_be_visible()
    expect(page.locator("#probability-bars")).to_be_visible()
    expect(page.locator("#model-info")).to_contain_text("test accuracy")
    expect(page.get_by_role("link", name="API reference")).to_have_attribute(
        "href", "/docs"
    )
    page.screenshot(path=str(screenshot_dir / "playground.png"), full_page=True)

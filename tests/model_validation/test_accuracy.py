"""Held-out accuracy of the published model through the serving preprocessing.

MNIST test digits go through ``prepare_digit`` as they are, and again re-rendered
the way clients send digits (inverted, on large canvases, JPEG, transparent,
rotated) through ``preprocess_upload``. Renderings are seeded, so a run is exact.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mnist_backend.preprocessing import prepare_digit, preprocess_upload

from .conftest import Classify, DigitSet, PublishedModel

MNIST_ACCURACY_FLOOR = 0.995
RENDERED_ACCURACY_FLOOR = 0.98
DIGITS_PER_RENDERING = 1000
MAX_PIXELS = 4_000_000

Render = Callable[[np.ndarray, np.random.Generator], bytes]


def _encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _scaled(digit: np.ndarray, size: int) -> Image.Image:
    """Return the 28x28 digit (ink as intensity) scaled up smoothly to ``size``."""
    return Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)


def _ink_on_canvas(
    ink: Image.Image, rng: np.random.Generator, low: int, high: int
) -> Image.Image:
    """Return an "L" ink layer of random size with ``ink`` pasted off-centre."""
    width, height = (int(side) for side in rng.integers(low, high, size=2))
    width, height = max(width, ink.width + 1), max(height, ink.height + 1)
    layer = Image.new("L", (width, height), 0)
    left = int(rng.integers(0, width - ink.width))
    top = int(rng.integers(0, height - ink.height))
    layer.paste(ink, (left, top))
    return layer


def _render_inverted(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Black digit on white, scaled up 3-8 times, as PNG."""
    size = 28 * int(rng.integers(3, 9))
    return _encode(Image.fromarray(255 - np.asarray(_scaled(digit, size))), "PNG")


def _render_large_canvas(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Black digit on a white 400-1200 px canvas, off-centre, as a fast PNG."""
    size = int(rng.integers(120, 400))
    layer = _ink_on_canvas(_scaled(digit, size), rng, 400, 1200)
    paper = Image.fromarray(255 - np.asarray(layer))
    return _encode(paper, "PNG", compress_level=1)


def _render_jpeg_photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Dark blue ink on textured off-white paper, JPEG quality 60-90."""
    size = int(rng.integers(120, 400))
    ink = _ink_on_canvas(_scaled(digit, size), rng, 400, 1200)
    grain = rng.normal(228, 6, size=(ink.height // 8 + 1, ink.width // 8 + 1))
    texture = Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)).resize(
        ink.size, Image.Resampling.BILINEAR
    )
    paper = Image.merge(
        "RGB", (texture.point(lambda level: level + 8), texture, texture)
    )
    pen = Image.new("RGB", ink.size, (30, 40, 110))
    photo = Image.composite(pen, paper, ink)
    return _encode(photo, "JPEG", quality=int(rng.integers(60, 91)))


def _render_transparent(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Ink on a transparent RGBA canvas, dark or light ink, as PNG."""
    size = int(rng.integers(100, 300))
    alpha = _ink_on_canvas(_scaled(digit, size), rng, 300, 600)
    colour = (20, 20, 20) if rng.random() < 0.5 else (250, 250, 250)
    canvas = Image.new("RGBA", alpha.size, (*colour, 0))
    canvas.putalpha(alpha)
    return _encode(canvas, "PNG", compress_level=1)


def _render_rotated(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Black digit on white, rotated by up to 15 degrees either way, as PNG."""
    angle = float(rng.uniform(-15, 15))
    ink = _scaled(digit, int(rng.integers(100, 300)))
    rotated = ink.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    layer = _ink_on_canvas(rotated, rng, 300, 700)
    return _encode(Image.fromarray(255 - np.asarray(layer)), "PNG", compress_level=1)


def _render_fine_pen(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Black hair-line strokes (about a third of MNIST's width) on white, as PNG."""
    thinned = _scaled(digit, 140).filter(ImageFilter.MinFilter(9))
    size = int(rng.integers(200, 400))
    ink = thinned.resize((size, size), Image.Resampling.BICUBIC)
    layer = _ink_on_canvas(ink, rng, 400, 800)
    return _encode(Image.fromarray(255 - np.asarray(layer)), "PNG", compress_level=1)


RENDERINGS: dict[str, Render] = {
    "inverted": _render_inverted,
    "large-canvas": _render_large_canvas,
    "jpeg-photo": _render_jpeg_photo,
    "transparent": _render_transparent,
    "rotated": _render_rotated,
    "fine-pen": _render_fine_pen,
}


def test_mnist_test_set_through_preprocessing_meets_accuracy_floor(
    mnist_test_set: DigitSet, classify: Classify
) -> None:
    tensors = np.stack(
        [
            prepare_digit(Image.fromarray(image)).tensor
            for image in mnist_test_set.images
        ]
    )

    accuracy = float((classify(tensors) == mnist_test_set.labels).mean())

    assert accuracy >= MNIST_ACCURACY_FLOOR, f"accuracy {accuracy:.4f}"


def test_preprocessing_leaves_mnist_digits_almost_unchanged(
    mnist_test_set: DigitSet,
) -> None:
    images = mnist_test_set.images[:2000]

    prepared = np.stack(
        [prepare_digit(Image.fromarray(image)).pixels for image in images]
    )

    difference = np.abs(prepared.astype(np.int16) - images).mean(axis=(1, 2))
    assert float(np.median(difference)) == 0.0
    assert float((difference < 1.0).mean()) >= 0.99


@pytest.mark.parametrize("rendering", list(RENDERINGS), ids=list(RENDERINGS))
def test_rendered_digits_meet_accuracy_floor(
    rendering: str, mnist_test_set: DigitSet, classify: Classify
) -> None:
    rng = np.random.default_rng(sorted(RENDERINGS).index(rendering))
    chosen = rng.choice(len(mnist_test_set.labels), DIGITS_PER_RENDERING, replace=False)
    uploads = [RENDERINGS[rendering](mnist_test_set.images[i], rng) for i in chosen]

    tensors = np.stack(
        [preprocess_upload(upload, max_pixels=MAX_PIXELS).tensor for upload in uploads]
    )
    accuracy = float((classify(tensors) == mnist_test_set.labels[chosen]).mean())

    assert accuracy >= RENDERED_ACCURACY_FLOOR, f"{rendering}: accuracy {accuracy:.4f}"


def test_same_upload_gives_identical_probabilities(
    mnist_test_set: DigitSet, published_model: PublishedModel
) -> None:
    upload = _render_jpeg_photo(mnist_test_set.images[0], np.random.default_rng(7))

    first = published_model.predict_probabilities(
        preprocess_upload(upload, max_pixels=MAX_PIXELS).tensor[np.newaxis]
    )
    second = published_model.predict_probabilities(
        preprocess_upload(upload, max_pixels=MAX_PIXELS).tensor[np.newaxis]
    )

    np.testing.assert_array_equal(first, second)


def test_probabilities_sum_to_one(
    mnist_test_set: DigitSet, published_model: PublishedModel
) -> None:
    tensors = np.stack(
        [
            prepare_digit(Image.fromarray(image)).tensor
            for image in mnist_test_set.images[:500]
        ]
    )

    probabilities = published_model.predict_probabilities(tensors)

    assert probabilities.shape == (500, 10)
    assert float(probabilities.min()) >= 0.0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

"""Fixtures for unit tests: digits drawn the way clients send them, and encoders."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image, ImageDraw

DrawSeven = Callable[..., Image.Image]
Encode = Callable[..., bytes]

# A "7" as two strokes in a unit box: a top bar and a long diagonal down to the left.
SEVEN_STROKES = (((0.0, 0.0), (1.0, 0.0)), ((1.0, 0.0), (0.35, 1.0)))


@pytest.fixture
def draw_seven() -> DrawSeven:
    """Return a function drawing a thick-stroked 7 in ``box`` on a plain canvas.

    ``mode``, ``paper`` and ``ink`` are Pillow values for the canvas and the pen, so
    the same 7 can be drawn black on white, white on black or on transparency.
    """

    def draw(
        size: tuple[int, int] = (400, 300),
        box: tuple[int, int, int, int] = (60, 40, 180, 240),
        *,
        mode: str = "L",
        paper: int | tuple[int, ...] = 255,
        ink: int | tuple[int, ...] = 0,
        stroke: int = 16,
    ) -> Image.Image:
        image = Image.new(mode, size, paper)
        pen = ImageDraw.Draw(image)
        left, top, right, bottom = box
        for start, end in SEVEN_STROKES:
            points = [
                (left + x * (right - left), top + y * (bottom - top))
                for x, y in (start, end)
            ]
            pen.line(points, fill=ink, width=stroke, joint="curve")
        return image

    return draw


@pytest.fixture
def encode() -> Encode:
    """Return a function saving an image in a Pillow format and giving its bytes."""

    def save(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=image_format, **options)
        return buffer.getvalue()

    return save


@pytest.fixture
def seven_png(draw_seven: DrawSeven, encode: Encode) -> bytes:
    """A black 7 on a white 400x300 canvas, off-centre, as PNG bytes."""
    return encode(draw_seven())

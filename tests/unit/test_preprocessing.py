"""Preprocessing: an accepted upload becomes the 28x28 digit the model expects."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnist_backend.contract import NORMALIZATION_MEAN, NORMALIZATION_STD
from mnist_backend.errors import (
    ImageTooLargeError,
    NoDigitFoundError,
    UndecodableImageError,
    UnsupportedImageError,
)
from mnist_backend.preprocessing import (
    ACCEPTED_FORMATS,
    PreparedDigit,
    decode_upload,
    encode_png,
    prepare_digit,
    preprocess_upload,
)

from .conftest import DrawSeven, Encode

MAX_PIXELS = 20_000_000
DOMAIN_ERRORS = (
    UnsupportedImageError,
    UndecodableImageError,
    ImageTooLargeError,
    NoDigitFoundError,
)
EXPECTED = "expected a PNG, JPEG, WEBP, BMP, GIF or TIFF image"


def _prepare(upload: bytes) -> np.ndarray:
    return preprocess_upload(upload, max_pixels=MAX_PIXELS).pixels


def _difference(first: np.ndarray, second: np.ndarray) -> float:
    """Return the mean absolute difference of two 28x28 results, in levels of 255.

    The results are aligned first (shifts of up to one pixel): centring moves whole
    pixels, so a tiny change of the centre of mass can move a digit by one.
    """
    first, second = first.astype(np.int16), second.astype(np.int16)
    return min(
        float(np.abs(np.roll(first, (rows, columns), axis=(0, 1)) - second).mean())
        for rows in (-1, 0, 1)
        for columns in (-1, 0, 1)
    )


def _centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    mass = pixels.astype(np.float64) / pixels.sum()
    rows, columns = np.indices(pixels.shape)
    return float((rows * mass).sum()), float((columns * mass).sum())


def _ink_extent(pixels: np.ndarray) -> tuple[int, int]:
    """Return the (height, width) of the box enclosing all non-zero pixels."""
    rows = np.flatnonzero(pixels.any(axis=1))
    columns = np.flatnonzero(pixels.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(columns[-1] - columns[0] + 1)


def _png_declaring(width: int, height: int) -> bytes:
    """Return a tiny PNG whose header declares ``width`` x ``height`` gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


# Polarity and transparency.


def test_light_on_dark_gives_same_pixels_as_dark_on_light(
    draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    white_on_black = encode(draw_seven(paper=0, ink=255))

    result = _prepare(white_on_black)

    np.testing.assert_array_equal(result, _prepare(seven_png))


@pytest.mark.parametrize(
    ("mode", "paper", "ink"),
    [
        ("RGBA", (0, 0, 0, 0), (0, 0, 0, 255)),
        ("RGBA", (255, 255, 255, 0), (30, 30, 30, 255)),
        ("RGBA", (0, 0, 0, 0), (255, 255, 255, 255)),
        ("LA", (0, 0), (0, 255)),
        ("LA", (0, 0), (250, 255)),
    ],
    ids=[
        "dark-ink-on-black-transparent",
        "dark-ink-on-white-transparent",
        "light-ink-on-transparent",
        "la-dark-ink",
        "la-light-ink",
    ],
)
def test_ink_on_transparent_canvas_gives_same_pixels_as_opaque_drawing(
    mode: str,
    paper: tuple[int, ...],
    ink: tuple[int, ...],
    draw_seven: DrawSeven,
    encode: Encode,
    seven_png: bytes,
) -> None:
    transparent = encode(draw_seven(mode=mode, paper=paper, ink=ink))

    difference = _difference(_prepare(transparent), _prepare(seven_png))

    assert difference < 1.0


@pytest.mark.parametrize("image_format", ["PNG", "GIF"], ids=["png", "gif"])
def test_palette_transparency_is_composited_like_an_alpha_channel(
    image_format: str, draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    # Index 0 is black but transparent, index 1 black and opaque: only the
    # transparency tells the ink from the background.
    palette_seven = draw_seven(mode="P", paper=0, ink=1)
    palette_seven.putpalette([0, 0, 0, 0, 0, 0])
    upload = encode(palette_seven, image_format, transparency=0)

    difference = _difference(_prepare(upload), _prepare(seven_png))

    assert difference < 1.0


# Geometry: centring and aspect ratio.


@pytest.mark.parametrize(
    "box",
    [(10, 10, 80, 110), (300, 180, 390, 290), (160, 20, 240, 280), (5, 120, 395, 170)],
    ids=["top-left", "bottom-right", "tall-centre", "wide-band"],
)
def test_off_centre_digit_ends_with_centre_of_mass_at_frame_centre(
    box: tuple[int, int, int, int], draw_seven: DrawSeven, encode: Encode
) -> None:
    upload = encode(draw_seven(box=box, stroke=8))

    row, column = _centre_of_mass(_prepare(upload))

    assert abs(row - 14.0) <= 1.0
    assert abs(column - 14.0) <= 1.0


def test_tall_thin_one_keeps_its_aspect_ratio(
    draw_seven: DrawSeven, encode: Encode
) -> None:
    canvas = Image.new("L", (600, 600), 255)
    canvas.paste(0, (280, 100, 320, 500))
    upload = encode(canvas)

    height, width = _ink_extent(_prepare(upload))

    assert height == 20
    assert 2 <= width <= 3


def test_digit_larger_than_the_box_is_scaled_to_twenty_pixels_on_its_longer_side(
    draw_seven: DrawSeven, encode: Encode
) -> None:
    upload = encode(draw_seven(size=(1000, 800), box=(100, 50, 900, 750), stroke=60))

    height, width = _ink_extent(_prepare(upload))

    assert max(height, width) == 20


def _stroke_width(pixels: np.ndarray) -> float:
    """Return twice the ink area per ink edge: the mean width of bright strokes."""
    ink = np.pad(pixels >= 128, 1)
    edges = (ink[1:] != ink[:-1]).sum() + (ink[:, 1:] != ink[:, :-1]).sum()
    return float(2 * ink.sum() / edges)


def test_hairline_strokes_are_widened_to_mnist_thickness(
    draw_seven: DrawSeven, encode: Encode
) -> None:
    fine_pen = draw_seven(size=(1000, 800), box=(200, 100, 600, 700), stroke=3)

    width = _stroke_width(_prepare(encode(fine_pen)))

    assert 2.0 <= width <= 3.5


def test_preparing_a_prepared_digit_changes_nothing(seven_png: bytes) -> None:
    prepared = _prepare(seven_png)

    again = prepare_digit(Image.fromarray(prepared)).pixels

    np.testing.assert_array_equal(again, prepared)


def test_tensor_is_pixels_normalised_with_training_statistics(seven_png: bytes) -> None:
    prepared = preprocess_upload(seven_png, max_pixels=MAX_PIXELS)

    expected = (prepared.pixels / 255.0 - NORMALIZATION_MEAN) / NORMALIZATION_STD

    assert prepared.tensor.shape == (1, 28, 28)
    assert prepared.tensor.dtype == np.float32
    np.testing.assert_allclose(prepared.tensor[0], expected, rtol=1e-6, atol=1e-6)


# EXIF orientation.

_INVERSE_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize(
    "orientation", [2, 3, 4, 5, 6, 7, 8], ids=lambda tag: f"exif-{tag}"
)
def test_exif_orientation_is_applied(
    orientation: int, draw_seven: DrawSeven, encode: Encode
) -> None:
    upright = draw_seven()
    stored = upright.transpose(_INVERSE_TRANSPOSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    upload = encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    difference = _difference(
        _prepare(upload), _prepare(encode(upright, "JPEG", quality=95))
    )

    assert difference < 3.0


def test_broken_exif_is_ignored(draw_seven: DrawSeven, encode: Encode) -> None:
    upright = draw_seven()
    upload = encode(
        upright, "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*\xff\xff\xff"
    )

    result = _prepare(upload)

    np.testing.assert_array_equal(result, _prepare(encode(upright, "JPEG", quality=95)))


# Formats and colour modes.


@pytest.mark.parametrize("image_format", ACCEPTED_FORMATS, ids=str.lower)
def test_each_accepted_format_decodes_to_the_same_digit(
    image_format: str, draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    upload = encode(
        draw_seven(mode="RGB", paper=(255, 255, 255), ink=(0, 0, 0)), image_format
    )

    difference = _difference(_prepare(upload), _prepare(seven_png))

    assert difference < 2.0


@pytest.mark.parametrize(
    ("mode", "image_format"),
    [("1", "PNG"), ("P", "BMP"), ("CMYK", "JPEG"), ("CMYK", "TIFF")],
    ids=["bilevel-png", "palette-bmp", "cmyk-jpeg", "cmyk-tiff"],
)
def test_colour_modes_decode_to_the_same_digit(
    mode: str,
    image_format: str,
    draw_seven: DrawSeven,
    encode: Encode,
    seven_png: bytes,
) -> None:
    upload = encode(draw_seven().convert(mode), image_format)

    difference = _difference(_prepare(upload), _prepare(seven_png))

    assert difference < 2.0


def test_sixteen_bit_grayscale_decodes_to_the_same_digit(
    draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    levels = np.asarray(draw_seven(), dtype=np.uint16) * 257
    upload = encode(Image.fromarray(levels))

    difference = _difference(_prepare(upload), _prepare(seven_png))

    assert Image.open(io.BytesIO(upload)).mode == "I;16"
    assert difference == 0.0


@pytest.mark.parametrize("image_format", ["GIF", "TIFF", "WEBP", "PNG"], ids=str.lower)
def test_only_the_first_frame_of_a_multi_frame_file_is_read(
    image_format: str, draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    later_frame = draw_seven(box=(220, 100, 380, 140))
    upload = encode(
        draw_seven(), image_format, save_all=True, append_images=[later_frame]
    )

    difference = _difference(_prepare(upload), _prepare(seven_png))

    assert Image.open(io.BytesIO(upload)).n_frames == 2
    assert difference < 2.0


# Large pictures are decoded small.


def test_twelve_megapixel_jpeg_is_decoded_at_reduced_size(
    draw_seven: DrawSeven, encode: Encode
) -> None:
    photo = draw_seven(size=(4000, 3000), box=(1000, 500, 2200, 2500), stroke=120)
    upload = encode(photo, "JPEG", quality=85)

    image = decode_upload(upload, max_pixels=MAX_PIXELS)

    assert image.size == (1000, 750)
    assert image.mode == "L"


def test_large_png_is_reduced_to_working_size_with_the_same_digit(
    draw_seven: DrawSeven, encode: Encode
) -> None:
    small = draw_seven(size=(400, 300), box=(100, 50, 220, 250), stroke=12)
    large = draw_seven(size=(4000, 3000), box=(1000, 500, 2200, 2500), stroke=120)

    image = decode_upload(encode(large), max_pixels=MAX_PIXELS)

    assert image.size == (572, 429)
    assert _difference(_prepare(encode(large)), _prepare(encode(small))) < 2.0


# No digit to find.


def _noise(scale: float, grain: int) -> Image.Image:
    """Return light paper with faint noise; ``grain`` pixels per noise sample."""
    rng = np.random.default_rng(1)
    samples = rng.normal(225, scale, size=(300 // grain, 400 // grain))
    small = Image.fromarray(np.clip(samples, 0, 255).astype(np.uint8))
    return small.resize((400, 300), Image.Resampling.BILINEAR)


@pytest.mark.parametrize(
    "canvas",
    [
        Image.new("L", (400, 300), 255),
        Image.new("L", (400, 300), 0),
        Image.new("RGB", (400, 300), (120, 130, 140)),
        Image.new("RGBA", (400, 300), (0, 0, 0, 0)),
        Image.linear_gradient("L")
        .resize((400, 300))
        .point(lambda level: 200 + level // 6),
        _noise(scale=6, grain=1),
        _noise(scale=8, grain=8),
    ],
    ids=[
        "white",
        "black",
        "uniform-colour",
        "fully-transparent",
        "soft-gradient",
        "sensor-noise",
        "paper-texture",
    ],
)
def test_image_without_ink_raises_no_digit_found(
    canvas: Image.Image, encode: Encode
) -> None:
    upload = encode(canvas)

    with pytest.raises(NoDigitFoundError) as caught:
        preprocess_upload(upload, max_pixels=MAX_PIXELS)

    assert caught.value.code == "no_digit_found"


def test_digit_on_textured_paper_is_found(
    draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    paper = np.asarray(_noise(scale=8, grain=8), dtype=np.int16)
    ink = 255 - np.asarray(draw_seven(), dtype=np.int16)
    photo = np.clip(paper - ink * 0.6, 0, 255).astype(np.uint8)
    upload = encode(Image.fromarray(photo), "JPEG", quality=80)

    difference = _difference(_prepare(upload), _prepare(seven_png))

    assert difference < 6.0


def test_isolated_specks_do_not_move_the_digit(
    draw_seven: DrawSeven, encode: Encode, seven_png: bytes
) -> None:
    speckled = draw_seven()
    for left, top in [(360, 20), (330, 270), (20, 280)]:
        speckled.paste(0, (left, top, left + 3, top + 3))

    result = _prepare(encode(speckled))

    np.testing.assert_array_equal(result, _prepare(seven_png))


# Rejected uploads.


@pytest.mark.parametrize(
    ("upload", "arrived"),
    [
        (b"", "an empty upload"),
        (b"the digit is seven\n", "text"),
        (b"BMW, not a bitmap", "text"),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
            "an SVG document",
        ),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
        (b"\x00\x00\x01\x00\x01\x00\x10\x10" + bytes(40), "an ICO icon"),
        (bytes(range(256)) * 4, "data in no recognised image format"),
    ],
    ids=["empty", "text", "text-starting-like-bmp", "svg", "pdf", "ico", "binary"],
)
def test_unsupported_upload_raises_naming_what_arrived(
    upload: bytes, arrived: str
) -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        decode_upload(upload, max_pixels=MAX_PIXELS)

    assert caught.value.detail == f"Got {arrived}; {EXPECTED}."


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"], ids=["png", "jpeg"])
def test_truncated_image_raises_undecodable_with_cause(
    image_format: str, draw_seven: DrawSeven, encode: Encode
) -> None:
    complete = encode(draw_seven(), image_format)

    with pytest.raises(UndecodableImageError) as caught:
        decode_upload(complete[: len(complete) // 2], max_pixels=MAX_PIXELS)

    assert caught.value.detail == (
        f"Could not decode a {image_format} image: the data is truncated or corrupt."
    )
    assert isinstance(caught.value.__cause__, OSError)


def test_corrupt_header_in_accepted_format_raises_undecodable() -> None:
    upload = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + bytes(30)

    with pytest.raises(UndecodableImageError) as caught:
        decode_upload(upload, max_pixels=MAX_PIXELS)

    assert caught.value.detail == "Could not decode a PNG image: its header is corrupt."


def test_pixel_count_over_limit_is_rejected_from_the_header() -> None:
    # The pixel data is far too short for the declared size: decoding it would fail
    # as corrupt, so "too large" proves the header alone decided.
    upload = _png_declaring(5_000, 4_000)

    with pytest.raises(ImageTooLargeError) as caught:
        decode_upload(upload, max_pixels=1_000_000)

    assert caught.value.detail == (
        "The image is 5000x4000 = 20000000 pixels; the limit is 1000000 pixels."
    )


def test_pillow_decompression_bomb_error_becomes_image_too_large() -> None:
    upload = _png_declaring(30_000, 30_000)

    with pytest.raises(ImageTooLargeError) as caught:
        decode_upload(upload, max_pixels=10**10)

    assert isinstance(caught.value.__cause__, Image.DecompressionBombError)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_decompression_bomb_warning_as_error_becomes_image_too_large() -> None:
    upload = _png_declaring(10_000, 10_000)

    with pytest.raises(ImageTooLargeError) as caught:
        decode_upload(upload, max_pixels=10**10)

    assert isinstance(caught.value.__cause__, Image.DecompressionBombWarning)


# Invariants on arbitrary input.


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(8, 700),
    height=st.integers(8, 700),
    box=st.tuples(*[st.floats(0.0, 1.0)] * 4),
    light_on_dark=st.booleans(),
)
def test_any_canvas_with_ink_gives_a_valid_model_input(
    width: int, height: int, box: tuple[float, float, float, float], light_on_dark: bool
) -> None:
    # The ink covers at least a twentieth of each side: a digit, not a speck.
    ink_width, ink_height = max(3, width // 20), max(3, height // 20)
    left = int(box[0] * (width - ink_width))
    right = left + ink_width + int(box[1] * (width - ink_width - left))
    top = int(box[2] * (height - ink_height))
    bottom = top + ink_height + int(box[3] * (height - ink_height - top))
    canvas = Image.new("L", (width, height), 0 if light_on_dark else 255)
    canvas.paste(255 if light_on_dark else 0, (left, top, right, bottom))

    prepared = prepare_digit(canvas)

    assert isinstance(prepared, PreparedDigit)
    assert prepared.pixels.shape == (28, 28)
    assert prepared.pixels.dtype == np.uint8
    assert int(prepared.pixels.max()) == 255
    assert prepared.tensor.shape == (1, 28, 28)
    assert prepared.tensor.dtype == np.float32
    assert bool(np.isfinite(prepared.tensor).all())


def _valid_uploads() -> list[bytes]:
    canvas = Image.new("RGB", (40, 30), "white")
    canvas.paste((0, 0, 0), (10, 5, 20, 25))
    uploads = []
    for image_format in ACCEPTED_FORMATS:
        buffer = io.BytesIO()
        canvas.save(buffer, format=image_format)
        uploads.append(buffer.getvalue())
    return uploads


@st.composite
def _damaged_uploads(draw: st.DrawFn) -> bytes:
    upload = bytearray(draw(st.sampled_from(_valid_uploads())))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(upload) - 1))
        upload[position] = draw(st.integers(0, 255))
    return bytes(upload[: draw(st.integers(1, len(upload)))])


def _outcome(upload: bytes) -> str:
    """Return the code of the domain error preprocessing raises, or "prepared"."""
    try:
        prepared = preprocess_upload(upload, max_pixels=MAX_PIXELS)
    except DOMAIN_ERRORS as error:
        return error.code
    return "prepared" if prepared.pixels.shape == (28, 28) else "malformed"


# Pillow warns about the damage it skips over (corrupt EXIF, oversized TIFF tags).
@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=300, deadline=None)
@given(upload=st.one_of(st.binary(max_size=512), _damaged_uploads()))
def test_arbitrary_bytes_raise_only_domain_errors(upload: bytes) -> None:
    outcome = _outcome(upload)

    assert outcome in {
        "unsupported_media_type",
        "undecodable_image",
        "image_too_large",
        "no_digit_found",
        "prepared",
    }


# Encoding the model's view.


def test_encode_png_round_trips_the_pixels() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=(28, 28), dtype=np.uint8)

    decoded = Image.open(io.BytesIO(encode_png(pixels)))

    assert decoded.format == "PNG"
    np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_encode_png_rejects_an_array_that_is_not_a_gray_image() -> None:
    with pytest.raises(
        ValueError, match=r"Expected a 2-D uint8 array; got 3-D float64\."
    ):
        encode_png(np.zeros((1, 28, 28)))

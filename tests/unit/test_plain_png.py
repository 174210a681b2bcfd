"""Plain PNGs decode to the pixels Pillow gives; every other file is left to Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mnist_backend import _digitcore, imaging, preprocessing
from mnist_backend.errors import ImageTooLargeError
from mnist_backend.plain_png import MAX_SIDE_PIXELS, decode_plain_png
from mnist_backend.preprocessing import decode_upload, prepare_digit, preprocess_upload

from .conftest import DrawSeven, Encode

MAX_PIXELS = 20_000_000
# PNG colour types with 8-bit samples, and their channels.
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
MODES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data))
    )


def _predictor(filter_type: int, left: int, above: int, above_left: int) -> int:
    if filter_type == 1:
        return left
    if filter_type == 2:
        return above
    if filter_type == 3:
        return (left + above) // 2
    if filter_type == 4:
        estimate = left + above - above_left
        distances = [
            abs(estimate - left),
            abs(estimate - above),
            abs(estimate - above_left),
        ]
        return (left, above, above_left)[distances.index(min(distances))]
    return 0


def _filtered_rows(pixels: np.ndarray, filters: Sequence[int]) -> bytes:
    """Return the rows of (H, W, C) ``pixels``, each filtered with its own type."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels).astype(int).tolist()
    out = bytearray()
    for y, row in enumerate(rows):
        above = rows[y - 1] if y > 0 else [0] * len(row)
        filter_type = filters[y % len(filters)]
        out.append(filter_type)
        for i, value in enumerate(row):
            left = row[i - channels] if i >= channels else 0
            above_left = above[i - channels] if i >= channels else 0
            prediction = _predictor(filter_type, left, above[i], above_left)
            out.append((value - prediction) % 256)
    return bytes(out)


def _png(
    pixels: np.ndarray,
    colour_type: int,
    *,
    filters: Sequence[int] = (0,),
    depth: int = 8,
    interlace: int = 0,
    before_data: Sequence[bytes] = (),
    after_data: Sequence[bytes] = (),
    idat_parts: int = 1,
    raw: bytes | None = None,
) -> bytes:
    """Return a PNG of ``pixels`` written chunk by chunk, with the given oddities."""
    height, width = pixels.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, interlace)
    data = zlib.compress(raw if raw is not None else _filtered_rows(pixels, filters))
    step = -(-len(data) // idat_parts)
    parts = [data[i : i + step] for i in range(0, len(data), step)]
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            *before_data,
            *(_chunk(b"IDAT", part) for part in parts),
            *after_data,
            _chunk(b"IEND", b""),
        ]
    )


def _pixels(
    rng: np.random.Generator, height: int, width: int, colour: int
) -> np.ndarray:
    return rng.integers(0, 256, (height, width, CHANNELS[colour]), dtype=np.uint8)


def _pillow_planes(upload: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Return luminance and coverage as the Pillow path computes them."""
    image = decode_upload(upload, max_pixels=MAX_PIXELS)
    image.load()
    return imaging.split_alpha(preprocessing._to_working_image(image))


def _assert_decodes_as_pillow(upload: bytes) -> None:
    plain = decode_plain_png(upload, max_pixels=MAX_PIXELS)
    assert plain is not None
    gray, alpha = preprocessing._planes_of(plain)
    pillow_gray, pillow_alpha = _pillow_planes(upload)
    np.testing.assert_array_equal(gray, pillow_gray, strict=True)
    if pillow_alpha is None:
        assert alpha is None
    else:
        assert alpha is not None
        np.testing.assert_array_equal(alpha, pillow_alpha, strict=True)


@pytest.mark.parametrize("colour", sorted(CHANNELS))
@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_each_colour_type_and_filter_decodes_as_pillow_decodes_it(
    colour: int, filter_type: int
) -> None:
    pixels = _pixels(np.random.default_rng(colour * 10 + filter_type), 17, 23, colour)
    _assert_decodes_as_pillow(_png(pixels, colour, filters=[filter_type]))


def test_rows_with_mixed_filters_decode_as_pillow_decodes_them() -> None:
    pixels = _pixels(np.random.default_rng(1), 40, 9, 6)
    _assert_decodes_as_pillow(_png(pixels, 6, filters=[4, 0, 3, 1, 2, 4, 4]))


def test_an_opaque_rgba_picture_has_no_coverage() -> None:
    pixels = _pixels(np.random.default_rng(2), 8, 8, 6)
    pixels[..., 3] = 255
    plain = decode_plain_png(_png(pixels, 6, filters=[1]), max_pixels=MAX_PIXELS)
    assert plain is not None
    assert preprocessing._planes_of(plain)[1] is None
    _assert_decodes_as_pillow(_png(pixels, 6, filters=[1]))


def test_pixel_data_split_over_chunks_and_known_ancillary_chunks_decode() -> None:
    pixels = _pixels(np.random.default_rng(3), 30, 30, 2)
    text = _chunk(b"tEXt", b"Software\x00canvas")
    gamma = _chunk(b"gAMA", struct.pack(">I", 45455))
    upload = _png(pixels, 2, filters=[2], before_data=[gamma, text], idat_parts=4)
    _assert_decodes_as_pillow(upload)


@pytest.mark.parametrize("size", [(1, 1), (1, MAX_SIDE_PIXELS), (MAX_SIDE_PIXELS, 2)])
def test_extreme_sizes_decode_as_pillow_decodes_them(size: tuple[int, int]) -> None:
    pixels = _pixels(np.random.default_rng(4), *size, 0)
    _assert_decodes_as_pillow(_png(pixels, 0, filters=[4, 1]))


@pytest.mark.parametrize("mode", ["L", "RGB", "LA", "RGBA"])
def test_pillow_written_drawings_decode_as_pillow_decodes_them(
    mode: str, draw_seven: DrawSeven, encode: Encode
) -> None:
    paper = {"L": 255, "RGB": (250, 240, 230), "LA": (0, 0), "RGBA": (0, 0, 0, 0)}[mode]
    ink = {"L": 0, "RGB": (20, 30, 200), "LA": (0, 255), "RGBA": (10, 10, 10, 255)}[
        mode
    ]
    image = draw_seven(mode=mode, paper=paper, ink=ink)
    for options in ({}, {"optimize": True}, {"compress_level": 0}):
        _assert_decodes_as_pillow(encode(image, "PNG", **options))


@settings(max_examples=60, deadline=None)
@given(
    colour=st.sampled_from(sorted(CHANNELS)),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    filters=st.lists(st.integers(0, 4), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_plain_png_decodes_as_pillow_decodes_it(
    colour: int, height: int, width: int, filters: list[int], seed: int
) -> None:
    pixels = _pixels(np.random.default_rng(seed), height, width, colour)
    _assert_decodes_as_pillow(_png(pixels, colour, filters=filters))


def test_the_prepared_digit_is_the_pillow_paths_digit(
    draw_seven: DrawSeven, encode: Encode
) -> None:
    upload = encode(draw_seven(mode="RGBA", paper=(0, 0, 0, 0), ink=(0, 0, 0, 255)))
    assert decode_plain_png(upload, max_pixels=MAX_PIXELS) is not None
    through_pillow = prepare_digit(decode_upload(upload, max_pixels=MAX_PIXELS))
    plain = preprocess_upload(upload, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(plain.pixels, through_pillow.pixels)
    np.testing.assert_array_equal(plain.tensor, through_pillow.tensor)


def _gray(height: int = 6, width: int = 5) -> np.ndarray:
    return _pixels(np.random.default_rng(5), height, width, 0)


def _with_bad_crc(upload: bytes) -> bytes:
    # The last byte of the IHDR chunk's checksum (8 signature + 8 head + 13 data + 4).
    damaged = bytearray(upload)
    damaged[8 + 8 + 13 + 3] ^= 0xFF
    return bytes(damaged)


def _palette_png() -> bytes:
    image = Image.fromarray(_gray()[..., 0]).convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _interrupted_pixel_data() -> bytes:
    """Return a PNG whose pixel data is split by a text chunk, which Pillow stops at."""
    pixels = _gray(30, 30)
    data = zlib.compress(_filtered_rows(pixels, [0]))
    header = struct.pack(">IIBBBBB", 30, 30, 8, 0, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", data[:10]),
            _chunk(b"tEXt", b"a\x00b"),
            _chunk(b"IDAT", data[10:]),
            _chunk(b"IEND", b""),
        ]
    )


# Filtered rows of _gray(): six rows of a filter byte and five pixels.
ROW_BYTES = 6 * (5 + 1)
LEFT_TO_PILLOW = {
    "palette": _palette_png(),
    "16-bit": _png(_gray(), 0, depth=16, raw=bytes(6 * (10 + 1))),
    "interlaced": _png(_gray(), 0, interlace=1),
    "transparency chunk": _png(_gray(), 0, before_data=[_chunk(b"tRNS", b"\x00\x00")]),
    "orientation chunk": _png(_gray(), 0, before_data=[_chunk(b"eXIf", b"MM\x00*")]),
    "unknown chunk": _png(_gray(), 0, before_data=[_chunk(b"zzZz", b"")]),
    "chunk between pixel data": _interrupted_pixel_data(),
    "bad checksum": _with_bad_crc(_png(_gray(), 0)),
    "short pixel data": _png(_gray(), 0, raw=bytes(ROW_BYTES - 1)),
    "long pixel data": _png(_gray(), 0, raw=bytes(ROW_BYTES + 1)),
    "unknown filter": _png(_gray(), 0, raw=b"\x05" + bytes(ROW_BYTES - 1)),
    "wide": _png(np.zeros((1, MAX_SIDE_PIXELS + 1, 1), dtype=np.uint8), 0),
    "tall": _png(np.zeros((MAX_SIDE_PIXELS + 1, 1, 1), dtype=np.uint8), 0),
    "no end chunk": _png(_gray(), 0)[:-12],
    "truncated": _png(_gray(), 0)[:-20],
    "not a png": b"GIF89a" + bytes(40),
    "empty": b"",
}


@pytest.mark.parametrize("upload", LEFT_TO_PILLOW.values(), ids=LEFT_TO_PILLOW.keys())
def test_anything_but_a_plain_png_is_left_to_pillow(upload: bytes) -> None:
    assert decode_plain_png(upload, max_pixels=MAX_PIXELS) is None


def test_the_pixel_cap_is_enforced_from_the_header() -> None:
    upload = _png(_gray(40, 50), 0)
    assert decode_plain_png(upload, max_pixels=2000) is not None
    with pytest.raises(ImageTooLargeError, match="the limit is 1999 pixels"):
        decode_plain_png(upload, max_pixels=1999)
    # A file too large for this decoder is left to Pillow, which enforces the cap.
    too_wide = _png(_gray(2, 2 * MAX_SIDE_PIXELS), 0)
    assert decode_plain_png(too_wide, max_pixels=2000) is None
    with pytest.raises(ImageTooLargeError):
        preprocess_upload(too_wide, max_pixels=2000)


@settings(max_examples=300, deadline=None)
@given(
    width=st.sampled_from([0, 1, 7, MAX_SIDE_PIXELS, 2**31 - 1, 2**32 - 1]),
    height=st.sampled_from([0, 1, 9, 2**31 - 1, 2**32 - 1]),
    depth=st.sampled_from([1, 8, 16]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 7]),
    interlace=st.sampled_from([0, 1, 2]),
    rows=st.binary(max_size=800),
    compress=st.booleans(),
)
def test_any_header_and_pixel_data_decode_or_go_to_pillow(
    width: int,
    height: int,
    depth: int,
    colour: int,
    interlace: int,
    rows: bytes,
    compress: bool,
) -> None:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    data = zlib.compress(rows) if compress else rows
    upload = b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", data),
            _chunk(b"IEND", b""),
        ]
    )
    try:
        plain = decode_plain_png(upload, max_pixels=MAX_PIXELS)
    except ImageTooLargeError:
        assert width * height > MAX_PIXELS
        return
    if plain is not None:
        assert plain.gray.shape == (height, width)
        assert len(rows) == height * (width * CHANNELS[colour] + 1)


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 9),
    height=st.integers(1, 9),
    channels=st.integers(1, 4),
    extra=st.integers(-3, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_row_unfilter_checks_its_input_size(
    width: int, height: int, channels: int, extra: int, seed: int
) -> None:
    size = height * (width * channels + 1) + extra
    raw = np.random.default_rng(seed).integers(0, 256, max(size, 0), np.uint8).tobytes()
    if extra != 0:
        with pytest.raises(ValueError, match="does not match"):
            _digitcore.png_rows(raw, width, height, channels)
        return
    rows = _digitcore.png_rows(raw, width, height, channels)
    filters = {raw[y * (width * channels + 1)] for y in range(height)}
    if not filters <= {0, 1, 2, 3, 4}:
        assert rows is None
        return
    assert rows is not None
    gray, alpha = rows
    assert len(gray) == width * height
    assert (alpha is not None) == (channels in (2, 4))

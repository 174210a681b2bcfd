"""Decode the plain PNGs most clients send, without Pillow's per-file overhead.

A canvas export or a saved MNIST digit is an 8-bit, non-interlaced gray, RGB or RGBA
PNG of a few hundred pixels a side. For such a file Pillow's Python-level chunk
handling costs several times the decoding itself, so this module reads the chunks,
inflates the pixel data with zlib and undoes the row filters in C
(``_digitcore.png_rows``). It gives the luminance and alpha Pillow would give,
byte for byte (tests/unit/test_plain_png.py compares them), and answers None for
anything else: other bit depths, palettes, interlacing, transparency or EXIF
chunks, a bad checksum, a truncated stream. ``preprocessing.py`` then decodes the
file with Pillow, which also names whatever is wrong with it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from mnist_backend.errors import ImageTooLargeError

try:
    from mnist_backend import _digitcore
except ImportError:  # built without a C compiler; Pillow decodes every PNG then
    _digitcore = None  # type: ignore[assignment]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pictures with a longer side from here on are reduced while decoding, which only
# the Pillow path does (preprocessing.WORKING_SIZE * 2).
MAX_SIDE_PIXELS = 1023
# Channels of each 8-bit colour type: gray, RGB, gray and alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
# Chunks that leave the pixels, their transparency and their orientation alone.
_IGNORED_CHUNKS = frozenset(
    {b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
)
_CHUNK_HEAD = struct.Struct(">I4s")
_HEADER = struct.Struct(">IIBBBBB")


@dataclass(frozen=True)
class PlainPixels:
    """Luminance (H, W) uint8 and, for gray-alpha or RGBA files, alpha (H, W)."""

    gray: np.ndarray
    alpha: np.ndarray | None


def decode_plain_png(upload: bytes, *, max_pixels: int) -> PlainPixels | None:
    """Return the pixels of a plain 8-bit PNG, or None to leave the file to Pillow.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
    """
    if _digitcore is None or not upload.startswith(PNG_SIGNATURE):
        return None
    chunks = _read_chunks(upload)
    if chunks is None:
        return None
    header, pixel_data = chunks
    width, height, depth, colour, compression, filtering, interlace = header
    channels = _CHANNELS.get(colour)
    if (depth, compression, filtering, interlace) != (8, 0, 0, 0) or channels is None:
        return None
    if width == 0 or height == 0 or max(width, height) > MAX_SIDE_PIXELS:
        return None
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels."
        )

    raw = _inflate(pixel_data, height * (width * channels + 1))
    if raw is None:
        return None
    rows = _digitcore.png_rows(raw, width, height, channels)
    if rows is None:
        return None
    gray_bytes, alpha_bytes = rows
    gray = np.frombuffer(gray_bytes, dtype=np.uint8).reshape(height, width)
    if alpha_bytes is None:
        return PlainPixels(gray, None)
    alpha = np.frombuffer(alpha_bytes, dtype=np.uint8).reshape(height, width)
    return PlainPixels(gray, alpha)


def _read_chunks(upload: bytes) -> tuple[tuple[int, ...], bytes] | None:
    """Return the IHDR fields and the joined IDAT data, or None if anything is odd."""
    position = len(PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    pixel_data: list[bytes] = []
    while position + _CHUNK_HEAD.size <= len(upload):
        length, kind = _CHUNK_HEAD.unpack_from(upload, position)
        start = position + _CHUNK_HEAD.size
        end = start + length
        if end + 4 > len(upload):
            return None
        (checksum,) = struct.unpack_from(">I", upload, end)
        if zlib.crc32(upload[start - 4 : end]) != checksum:
            return None
        position = end + 4

        if kind == b"IHDR" and header is None and length == _HEADER.size:
            header = _HEADER.unpack_from(upload, start)
        elif kind == b"IDAT" and header is not None:
            pixel_data.append(upload[start:end])
        elif kind == b"IEND" and header is not None and pixel_data:
            return header, b"".join(pixel_data)
        # The pixel data is one run of IDAT chunks; Pillow stops reading at the
        # first other chunk after it.
        elif kind not in _IGNORED_CHUNKS or header is None or pixel_data:
            return None
    return None


def _inflate(compressed: bytes, expected_bytes: int) -> bytes | None:
    """Return exactly ``expected_bytes`` inflated from ``compressed``, or None."""
    inflater = zlib.decompressobj()
    try:
        # One byte more than needed, so a stream that holds more is noticed
        # without ever inflating it further.
        raw = inflater.decompress(compressed, expected_bytes + 1)
    except zlib.error:
        return None
    if len(raw) != expected_bytes or not inflater.eof or inflater.unused_data:
        return None
    return raw

"""Upload bytes to the model's input: decode safely, then prepare an MNIST-style digit.

This module owns everything between the raw upload and the normalised (1, 28, 28)
tensor: format checks, pixel limits, decoding at reduced size, orientation and
transparency. The pixel steps themselves live in ``imaging.py``; running the model
is left to ``inference.py``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from mnist_backend import imaging
from mnist_backend.contract import NORMALIZATION_MEAN, NORMALIZATION_STD
from mnist_backend.errors import (
    ImageTooLargeError,
    MnistBackendError,
    UndecodableImageError,
    UnsupportedImageError,
)
from mnist_backend.plain_png import PlainPixels, decode_plain_png

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

# Large pictures are decoded (JPEG) or reduced (other formats) to a longer side of
# at least this many pixels: plenty for a digit, and cheap to process.
WORKING_SIZE = 512

# Pixels converted per band while reducing, which bounds the memory used beside the
# one decoded copy of the picture.
BAND_PIXELS = 1 << 20

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"WEBP", 8, "a WEBP image"),
    (b"BM", 0, "a BMP image"),
    (b"GIF8", 0, "a GIF image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"II+\x00", 0, "a TIFF image"),
    (b"MM\x00+", 0, "a TIFF image"),
)
_FOREIGN_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"%!PS", 0, "a PostScript document"),
    (b"\x00\x00\x01\x00", 0, "an ICO icon"),
    (b"\x00\x00\x02\x00", 0, "a CUR cursor"),
    (b"ftyp", 4, "an HEIF or AVIF image"),
    (b"8BPS", 0, "a Photoshop document"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000 image"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"\x1f\x8b", 0, "a gzip archive"),
)
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_EXPECTED = "expected a PNG, JPEG, WEBP, BMP, GIF or TIFF image"


@dataclass(frozen=True)
class PreparedDigit:
    """A digit in the model's frame, plus the same pixels as the model sees them."""

    # (28, 28) uint8, white digit on black, exactly what the model sees.
    pixels: np.ndarray
    # (1, 28, 28) float32, normalised with contract.NORMALIZATION_MEAN/STD.
    tensor: np.ndarray


def decode_upload(upload: bytes, *, max_pixels: int) -> Image.Image:
    """Return the upload's first frame as an upright grayscale image ("L" or "LA").

    The pixel count is checked against ``max_pixels`` from the header, before any
    pixel is decoded. Pictures with a longer side above 2 * WORKING_SIZE come back
    reduced (JPEG while decoding), so at most one full-size copy is ever held.

    Raises:
        UnsupportedImageError: not an image, or a format outside ACCEPTED_FORMATS.
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
        UndecodableImageError: an accepted format, but truncated or corrupt.
    """
    # Limit: only the first frame of an animation or multi-page file is read; a
    # digit drawn on a later frame is ignored.
    description = _describe(upload)
    with _pillow_failures(description):
        try:
            opened = Image.open(io.BytesIO(upload), formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError as exc:
            if description in {text for _, _, text in _SIGNATURES}:
                raise UndecodableImageError(
                    f"Could not decode {description}: its header is corrupt."
                ) from exc
            raise UnsupportedImageError(f"Got {description}; {_EXPECTED}.") from exc

        with opened:
            _check_pixel_count(opened, max_pixels)
            _request_reduced_decoding(opened)
            opened.load()
            orientation = _read_orientation(opened)
            image = _to_working_image(opened)
            if image is opened:
                # Closing the file also releases the pixels of the image it opened.
                image = opened.copy()
        return _apply_orientation(image, orientation)


def prepare_digit(image: Image.Image) -> PreparedDigit:
    """Return ``image`` as an MNIST-style digit and its normalised model input.

    Accepts any Pillow image (colour, transparency, any size, either polarity). A
    28x28 MNIST digit comes back unchanged, apart from specks of dirt beside it.

    Raises:
        NoDigitFoundError: blank canvas, uniform image or only faint noise.
        UnsupportedImageError: a colour mode that cannot be turned into grayscale.
    """
    with _pillow_failures("the image"):
        image.load()  # a lazily opened file decodes here, under the same guard
        working = _to_working_image(image)
    return _prepare_planes(*imaging.split_alpha(working))


def preprocess_upload(upload: bytes, *, max_pixels: int) -> PreparedDigit:
    """Return the prepared digit of an upload; raises what the two steps raise.

    A plain PNG skips Pillow (``plain_png.py``), with the same result.
    """
    plain = decode_plain_png(upload, max_pixels=max_pixels)
    if plain is not None:
        return _prepare_planes(*_planes_of(plain))
    return prepare_digit(decode_upload(upload, max_pixels=max_pixels))


def _planes_of(plain: PlainPixels) -> tuple[np.ndarray, np.ndarray | None]:
    """Return luminance and coverage as ``imaging.split_alpha`` gives them."""
    gray = plain.gray.astype(np.float32)
    if plain.alpha is None or plain.alpha.min() >= 255:
        return gray, None
    return gray, plain.alpha.astype(np.float32) / 255.0


def _prepare_planes(gray: np.ndarray, alpha: np.ndarray | None) -> PreparedDigit:
    """Return the prepared digit of float32 luminance (0-255) and coverage (0-1)."""
    if alpha is not None:
        gray = imaging.composite_alpha(gray, alpha)
    ink, rows, columns, stroke_width = imaging.locate_digit(gray)
    strokes = imaging.thicken_thin_strokes(ink[rows, columns], stroke_width)
    digit = imaging.fit_into_digit_box(strokes)
    pixels = imaging.centre_by_mass(digit)
    return PreparedDigit(pixels=pixels, tensor=_normalise(pixels))


def encode_png(pixels: np.ndarray) -> bytes:
    """Return a 2-D uint8 array (such as ``PreparedDigit.pixels``) as PNG bytes."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(
            f"Expected a 2-D uint8 array; got {pixels.ndim}-D {pixels.dtype}."
        )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def _pillow_failures(description: str) -> Iterator[None]:
    """Turn whatever Pillow raises on hostile input into a domain error.

    Pillow's decoders raise a wide, undocumented set of exceptions on crafted files
    (OSError, SyntaxError, ValueError, struct.error, EOFError, ZeroDivisionError,
    IndexError...). Only Pillow runs inside this block, so every such exception is a
    property of the upload, never a fault of the service.
    """
    try:
        yield
    except (MnistBackendError, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"The upload declares more pixels than the decoder allows; {_EXPECTED} "
            "of a reasonable size."
        ) from exc
    except Exception as exc:
        raise UndecodableImageError(
            f"Could not decode {description}: the data is truncated or corrupt."
        ) from exc


def _describe(upload: bytes) -> str:
    """Return what the upload looks like, from its leading bytes, for messages."""
    if not upload:
        return "an empty upload"
    for signature, offset, description in _SIGNATURES + _FOREIGN_SIGNATURES:
        if upload[offset : offset + len(signature)] == signature:
            if signature == b"BM" and not _has_bmp_header(upload):
                break
            return description

    head = upload[:1024]
    if b"<svg" in head.lower():
        return "an SVG document"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "data in no recognised image format"
    if all(char.isprintable() or char.isspace() for char in text):
        return "text"
    return "data in no recognised image format"


def _has_bmp_header(upload: bytes) -> bool:
    """Return whether a "BM" upload carries a known BMP info-header size."""
    header_size = int.from_bytes(upload[14:18], "little")
    return header_size in {12, 16, 40, 52, 56, 64, 108, 124}


def _check_pixel_count(image: ImageFile.ImageFile, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels."
        )
    if width == 0 or height == 0:
        raise UndecodableImageError(
            f"The image declares an empty size of {width}x{height}; {_EXPECTED}."
        )


def _request_reduced_decoding(image: ImageFile.ImageFile) -> None:
    """Ask JPEG to decode straight to grayscale at 1/2, 1/4 or 1/8 scale."""
    width, height = image.size
    longer = max(width, height)
    if image.format not in {"JPEG", "MPO"} or longer < 2 * WORKING_SIZE:
        return
    target = (
        max(1, width * WORKING_SIZE // longer),
        max(1, height * WORKING_SIZE // longer),
    )
    image.draft("L", target)


def _read_orientation(image: Image.Image) -> int:
    """Return the EXIF orientation (1 to 8); broken or missing EXIF counts as 1."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:
        # EXIF is metadata from the client: an unreadable block must not reject an
        # otherwise fine image, so it is read as "upright".
        return 1
    return value if isinstance(value, int) and value in _EXIF_TRANSPOSE else 1


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _EXIF_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _to_working_image(image: Image.Image) -> Image.Image:
    """Return ``image`` as "L" or "LA", reduced to about WORKING_SIZE if larger.

    The picture is converted and reduced band by band, so the only full-size copy
    is the decoded one that is passed in.
    """
    has_alpha = image.mode in _ALPHA_MODES or (
        "transparency" in image.info and image.mode not in _WIDE_GRAY_MODES
    )
    target_mode = "LA" if has_alpha else "L"
    if image.mode == target_mode and max(image.size) < 2 * WORKING_SIZE:
        return image

    width, height = image.size
    factor = max(1, max(width, height) // WORKING_SIZE)
    rows_per_band = factor * max(1, BAND_PIXELS // (width * factor))
    scale = _wide_gray_scale(image)
    result = Image.new(target_mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows_per_band):
        band = image.crop((0, top, width, min(height, top + rows_per_band)))
        band = _convert_band(band, target_mode, scale)
        if factor > 1:
            band = band.reduce(factor)
        result.paste(band, (0, top // factor))
    return result


def _convert_band(band: Image.Image, target_mode: str, scale: float) -> Image.Image:
    # Limit: the transparency of 16-bit and float images is ignored; such a
    # picture is read as if it were opaque.
    if band.mode in _WIDE_GRAY_MODES:
        values = np.asarray(band, dtype=np.float32) * scale
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    if band.mode == target_mode:
        return band
    try:
        if target_mode == "LA":
            return band.convert("RGBA").convert("LA")
        return band.convert("L")
    except ValueError as exc:
        raise UnsupportedImageError(
            f"Got an image in colour mode {band.mode}, which cannot be read as "
            f"grayscale; {_EXPECTED} in RGB, grayscale or palette colours."
        ) from exc


def _wide_gray_scale(image: Image.Image) -> float:
    """Return the factor that maps a 16-bit, 32-bit or float image onto 0-255."""
    if image.mode not in _WIDE_GRAY_MODES:
        return 1.0
    if image.mode.startswith("I;16"):
        return 255.0 / 65535.0
    extrema = image.getextrema()
    high = float(extrema[1])  # type: ignore[arg-type]
    if image.mode == "F" and high <= 1.0:
        return 255.0
    if high <= 255.0:
        return 1.0
    return 255.0 / 65535.0 if high <= 65535.0 else 255.0 / high


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """Return (1, 28, 28) float32 in the statistics the model was trained with."""
    tensor: np.ndarray = _NORMALISED_LEVELS[pixels][np.newaxis]
    return tensor


def _normalised_levels() -> np.ndarray:
    """Return the normalised float32 value of each of the 256 pixel levels.

    The same float32 operations as on a whole image, applied once per level, so a
    lookup gives the values bit for bit at a fraction of the cost.
    """
    scaled = np.arange(256, dtype=np.float32) / 255.0
    levels: np.ndarray = ((scaled - NORMALIZATION_MEAN) / NORMALIZATION_STD).astype(
        np.float32
    )
    return levels


_NORMALISED_LEVELS = _normalised_levels()

"""Pixel steps that turn a grayscale picture into an MNIST-style 28x28 digit.

Arrays in, arrays out: decoding and file formats stay in ``preprocessing.py``. Every
step works on float32 luminance in 0-255 and mirrors how MNIST itself was built: ink
levelled against its paper, the digit fitted into a 20x20 box keeping its aspect
ratio, then shifted so its centre of mass sits at the centre of the 28x28 frame.

The statistics that read every pixel (levelling, framing, stroke width, centre of
mass) also exist in C, in ``_digitcore.c``, with the same arithmetic; the functions
here are the reference, and the service calls the C versions through
``locate_digit`` and ``centre_by_mass`` whenever the extension is built.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from mnist_backend.contract import DIGIT_BOX_SIZE, IMAGE_SIZE
from mnist_backend.errors import NoDigitFoundError

try:
    from mnist_backend import _digitcore
except ImportError:  # built without a C compiler; see is_native()
    _digitcore = None  # type: ignore[assignment]

FloatArray = NDArray[np.float32]
ByteArray = NDArray[np.uint8]

# MNIST digits have their centre of mass at (14.0, 14.0) in pixel-index coordinates.
FRAME_CENTRE = IMAGE_SIZE / 2

# Share of pixels allowed to be more extreme than the "extreme" ink level: enough to
# ignore a few hot or dead pixels, few enough that thin strokes on a large canvas
# (well under 1 % of the picture) still count as ink.
# Limit: ink covering less than this share of the picture is not seen; a tiny digit
# in a big photo raises NoDigitFoundError, and the client has to crop closer.
EXTREME_QUANTILE = 1e-4

# Ink must stand out from the paper's own noise by this many levels (of 255); paper
# texture, JPEG ringing and sensor noise stay below it, faint pencil stays above.
MIN_INK_CONTRAST = 40.0
NOISE_SPREADS = 3.0

# After stretching to 0-255, pixels at or above this level count as ink when
# locating the digit; fainter pixels only extend its box at the edges.
INK_LEVEL = 64.0
FAINT_INK_LEVEL = 0.0
MAX_EDGE_GROWTH = 2

# Stroke widths in pixels of the 20-pixel box. MNIST's median is 2.0 and under 1 %
# of its digits are thinner than 1.0, so MNIST stays as it is; hair-lines are
# widened to a bold 2.5, which recognised thin-pen renderings best.
MIN_STROKE_WIDTH = 1.0
TARGET_STROKE_WIDTH = 2.5
STROKE_LEVEL = 128.0
DILATION_SCALE = 4

# Ink rows (or columns) separated by more empty ones than this share of the picture
# belong to different objects; a light one is a speck of dirt, not part of the digit.
MIN_GAP_FRACTION = 0.05
MIN_GAP_PIXELS = 3
SPECK_MASS_FRACTION = 0.05
# Profiles up to this many entries are scanned in Python rather than with numpy.
SHORT_PROFILE_ENTRIES = 128

# The paper level is read from a ring 1/50 (2 %) of the shorter side wide.
BORDER_FRACTION_DIVISOR = 50
# Borders up to this many pixels get their median and spread from a sort; larger
# ones (big pictures) from numpy's selection, which scales better.
SORTED_STATISTICS_MAX_PIXELS = 4096

# The statuses _digitcore.locate_digit answers with besides 0 (found), and the
# message each one stands for.
_NO_CONTRAST, _NO_DISTINCT_INK = 1, 2
NO_CONTRAST_MESSAGE = (
    "No digit found: the image holds no ink that stands out from its "
    "background; expected a dark digit on a light background or the reverse."
)
NO_DISTINCT_INK_MESSAGE = "No digit found: the image holds no distinct ink."


def is_native() -> bool:
    """Return whether the pixel statistics run in C (``_digitcore`` was built)."""
    return _digitcore is not None


def split_alpha(
    image: Image.Image,
) -> tuple[FloatArray, FloatArray | None]:
    """Return luminance (0-255) of an "L" or "LA" image, and its coverage (0-1).

    Coverage is None when the image is opaque everywhere.
    """
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32), None
    gray, alpha = (np.asarray(channel, dtype=np.float32) for channel in image.split())
    if alpha.min() >= 255.0:
        return gray, None
    return gray, alpha / 255.0


def composite_alpha(gray: FloatArray, alpha: FloatArray) -> FloatArray:
    """Return ``gray`` flattened onto an opaque background chosen from the content.

    ``alpha`` is coverage in 0-1. A mostly transparent picture is strokes on nothing:
    the background becomes white under dark strokes and black under light ones, so
    the ink keeps its contrast. A mostly opaque picture keeps its own paper colour.
    """
    opaque = alpha >= 0.5
    coverage = float(opaque.mean())
    if coverage == 0.0:
        raise NoDigitFoundError("The image is fully transparent; expected a digit.")

    content_level = float(np.median(gray[opaque]))
    if coverage <= 0.5:
        background = 255.0 if content_level < 128.0 else 0.0
    else:
        background = content_level
    return (gray * alpha + background * (1.0 - alpha)).astype(np.float32)


def extract_ink(gray: FloatArray) -> FloatArray:
    """Return the ink as white on black: background levelled to 0, ink peak at 255.

    The paper level is the median of the picture's border; ink is whichever side of
    it reaches further (dark pen on white paper, or a light digit on black). The
    border's own noise is subtracted so paper texture becomes 0.

    Raises:
        NoDigitFoundError: nothing stands out from the paper by MIN_INK_CONTRAST.
    """
    # Limit: the paper is one flat level taken from the border; strong uneven
    # lighting, or a photo whose border is not paper (a desk around the sheet), can
    # make the wrong side the ink and crop the sheet instead of the digit.
    border = _border_pixels(gray)
    paper, spread = _paper_level_and_spread(border)
    darkest, lightest = _quantiles(gray, EXTREME_QUANTILE, 1 - EXTREME_QUANTILE)
    polarity = -1.0 if paper - darkest > lightest - paper else 1.0
    extent = max(paper - darkest, lightest - paper)

    # The spread is the upper quartile of the border's deviations, which ignores a
    # digit touching up to a quarter of the border; the cap keeps a digit that
    # touches more of it.
    noise = min(NOISE_SPREADS * spread, extent / 2)
    peak = extent - noise
    if peak < MIN_INK_CONTRAST:
        raise NoDigitFoundError(NO_CONTRAST_MESSAGE)

    ink = (polarity * (gray - paper) - noise) * (255.0 / peak)
    return np.clip(ink, 0.0, 255.0, out=ink)


def find_digit_box(ink: FloatArray) -> tuple[slice, slice]:
    """Return the (rows, columns) slices that enclose the digit in ``ink``.

    Ink separated from the heaviest group of ink by a clear gap (specks, dust, a
    stray mark at the edge) is left out; faint anti-aliased edges next to the digit
    are kept so an MNIST digit keeps its exact 20-pixel extent.

    Limit: substantial marks are all kept, so two digits, or a digit and a ruled
    line, are framed together and classified as one.

    Raises:
        NoDigitFoundError: no pixel reaches INK_LEVEL.
    """
    weights = np.where(ink >= INK_LEVEL, ink, 0.0)
    if not weights.any():
        raise NoDigitFoundError(NO_DISTINCT_INK_MESSAGE)

    row_profile = weights.sum(axis=1)
    rows = _heaviest_run(row_profile)
    column_profile = weights[rows].sum(axis=0)
    columns = _heaviest_run(column_profile)
    if not _spans_all_ink(row_profile, rows) or not _spans_all_ink(
        column_profile, columns
    ):
        # Something was left out, which can change the other axis's profile.
        rows = _heaviest_run(weights[:, columns].sum(axis=1))
        columns = _heaviest_run(weights[rows].sum(axis=0))
    # Otherwise a second pass would see the same profiles and find the same box.
    return _grow_over_faint_edges(ink, rows, columns)


def locate_digit(gray: FloatArray) -> tuple[FloatArray, slice, slice, float]:
    """Return the ink, the digit's (rows, columns) box in it and its stroke width.

    The same values as ``extract_ink``, then ``find_digit_box`` on its result and
    the stroke width of that crop, bit for bit; with the extension built it is one
    C call, which on a small upload costs a tenth of the numpy steps.

    Raises:
        NoDigitFoundError: as ``extract_ink`` and ``find_digit_box`` do.
    """
    if _digitcore is None:
        ink = extract_ink(gray)
        rows, columns = find_digit_box(ink)
        return ink, rows, columns, _stroke_width(ink[rows, columns])

    gray = np.ascontiguousarray(gray, dtype=np.float32)
    ink = np.empty_like(gray)
    status, top, bottom, left, right, width = _digitcore.locate_digit(gray, ink)
    if status == _NO_CONTRAST:
        raise NoDigitFoundError(NO_CONTRAST_MESSAGE)
    if status == _NO_DISTINCT_INK:
        raise NoDigitFoundError(NO_DISTINCT_INK_MESSAGE)
    return ink, slice(top, bottom), slice(left, right), width


def _spans_all_ink(profile: NDArray[np.float64], span: slice) -> bool:
    """Return whether ``span`` covers every non-empty entry of ``profile``."""
    return not (profile[: span.start].any() or profile[span.stop :].any())


def thicken_thin_strokes(crop: FloatArray, width: float) -> FloatArray:
    """Return ``crop`` with strokes widened if they would end up thinner than MNIST's.

    ``width`` is the crop's stroke width, as ``locate_digit`` measures it.

    A fine pen on a large photo shrinks to hair-lines a fraction of a pixel wide,
    which MNIST (strokes about two pixels wide in the 20-pixel box) never shows the
    model. Such a crop is first shrunk to DILATION_SCALE times the box (averaging,
    so no stroke is lost), its strokes dilated to the target width there, and the
    faint averaged ink brightened (square-root curve) so it reads as ink again.
    """
    scale = DIGIT_BOX_SIZE / max(crop.shape)
    if width * scale >= MIN_STROKE_WIDTH:
        return crop

    factor = max(1, max(crop.shape) // (DILATION_SCALE * DIGIT_BOX_SIZE))
    image = Image.fromarray(np.rint(crop).astype(np.uint8)).reduce(factor)
    passes = math.ceil((TARGET_STROKE_WIDTH / (scale * factor) - width / factor) / 2)
    image = Image.fromarray(np.pad(np.asarray(image), passes))
    for _ in range(passes):
        image = image.filter(ImageFilter.MaxFilter(3))

    widened = np.asarray(image, dtype=np.float32)
    brightened: FloatArray = np.sqrt(widened / max(float(widened.max()), 1.0)) * 255.0
    return brightened.astype(np.float32)


def fit_into_digit_box(crop: FloatArray) -> ByteArray:
    """Return ``crop`` scaled so its longer side is DIGIT_BOX_SIZE, aspect kept.

    Resampling is Lanczos, which low-passes when shrinking (the anti-aliasing MNIST
    was made with); the result is re-stretched so its strongest ink is 255 again,
    because thin strokes shrunk many times over otherwise fade to gray.
    """
    height, width = crop.shape
    scale = DIGIT_BOX_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        resized = Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)
        crop = np.asarray(resized, dtype=np.float32)

    crop = np.clip(crop, 0.0, 255.0)
    peak = float(crop.max())
    if peak <= 0.0:
        raise NoDigitFoundError("No digit found: the ink vanished when resized.")
    digit: ByteArray = np.rint(crop * (255.0 / peak)).astype(np.uint8)
    return digit


def centre_by_mass(digit: ByteArray) -> ByteArray:
    """Return a 28x28 frame with ``digit`` placed so its centre of mass is central.

    The shift is whole pixels, clipped so the digit stays inside the frame, as in
    MNIST: a digit that is already centred is copied unchanged.
    """
    height, width = digit.shape
    # Integer sums are exact, so the centre is the same float as with float64 sums.
    total, row_moment, column_moment = _mass_moments(digit)
    centre_row = row_moment / total
    centre_column = column_moment / total

    top = _clip(round(FRAME_CENTRE - centre_row), 0, IMAGE_SIZE - height)
    left = _clip(round(FRAME_CENTRE - centre_column), 0, IMAGE_SIZE - width)
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    frame[top : top + height, left : left + width] = digit
    return frame


def _mass_moments(digit: ByteArray) -> tuple[int, int, int]:
    """Return the digit's total ink and its first moments along rows and columns."""
    if _digitcore is not None:
        return _digitcore.mass_moments(np.ascontiguousarray(digit))
    row_mass = digit.sum(axis=1, dtype=np.int64)
    column_mass = digit.sum(axis=0, dtype=np.int64)
    return (
        int(row_mass.sum()),
        int(row_mass @ np.arange(digit.shape[0])),
        int(column_mass @ np.arange(digit.shape[1])),
    )


def _border_pixels(gray: FloatArray) -> FloatArray:
    """Return the pixels of a ring about 2 % of the picture wide along its edges."""
    height, width = gray.shape
    ring = max(1, min(height, width) // BORDER_FRACTION_DIVISOR)
    return np.concatenate(
        [
            gray[:ring].ravel(),
            gray[-ring:].ravel(),
            gray[ring:-ring, :ring].ravel(),
            gray[ring:-ring, -ring:].ravel(),
        ]
    )


def _paper_level_and_spread(border: FloatArray) -> tuple[float, float]:
    """Return the border's median and the upper quartile of its deviations from it.

    Equal to ``np.median`` and ``np.quantile(..., 0.75)``, bit for bit. For the
    small borders of small uploads two sorts cost a tenth of numpy's general
    functions, whose per-call overhead dominated the preparation of a 28x28 digit.
    """
    if border.size > SORTED_STATISTICS_MAX_PIXELS:
        paper = float(np.median(border))
        return paper, float(np.quantile(np.abs(border - paper), 0.75))
    ordered = np.sort(border)
    middle_low, middle_high = (
        ordered[(ordered.size - 1) // 2],
        ordered[ordered.size // 2],
    )
    paper = float((middle_low + middle_high) / 2)
    deviations = np.sort(np.abs(border - paper))
    return paper, _linear_quantile(deviations, 0.75)


def _linear_quantile(ordered: FloatArray, fraction: float) -> float:
    """Return the quantile of sorted values as numpy's default "linear" method does."""
    position = fraction * (ordered.size - 1)
    low = math.floor(position)
    gamma = position - low
    below, above = ordered[low], ordered[min(low + 1, ordered.size - 1)]
    # numpy interpolates from the nearer end, which decides the last bit.
    if gamma >= 0.5:
        return float(above - (above - below) * (1 - gamma))
    return float(below + (above - below) * gamma)


def _quantiles(gray: FloatArray, low: float, high: float) -> tuple[float, float]:
    """Return two quantiles of 0-255 values to the nearest level, from a histogram.

    A histogram costs one pass, where sorting-based quantiles dominated the time
    of the whole preparation on large pictures. When the picture is too small for
    either quantile to skip a single pixel, they are its lowest and highest levels,
    which two reductions find for a fraction of the histogram's cost.
    """
    size = gray.size
    if low * size < 1 and size - 1 < high * size < size:
        darkest = min(max(float(gray.min()), 0.0), 255.0)
        lightest = min(max(float(gray.max()), 0.0), 255.0)
        # The histogram bins truncate towards zero, as the uint8 cast does.
        return float(math.floor(darkest)), float(math.floor(lightest))
    levels = np.clip(gray, 0, 255).astype(np.uint8)
    cumulative = np.cumsum(np.bincount(levels.ravel(), minlength=256))
    found = np.searchsorted(cumulative, [low * size, high * size], "right")
    return float(found[0]), float(found[1])


def _heaviest_run(profile: NDArray[np.float64]) -> slice:
    """Return the span of the substantial groups of non-empty entries in ``profile``.

    Groups are separated by gaps of empty entries; a group lighter than
    SPECK_MASS_FRACTION of the heaviest one is a speck and left out.
    """
    min_gap = max(MIN_GAP_PIXELS, round(MIN_GAP_FRACTION * profile.size))
    if profile.size <= SHORT_PROFILE_ENTRIES:
        # A loop over a short list costs less than the five numpy calls below.
        filled = [index for index, value in enumerate(profile.tolist()) if value > 0]
        if all(b - a <= min_gap for a, b in itertools.pairwise(filled)):
            return slice(filled[0], filled[-1] + 1)
    found = np.flatnonzero(profile > 0)
    is_break = (found[1:] - found[:-1]) > min_gap
    if not is_break.any():
        # One group, the usual case: it is the heaviest, so nothing is left out.
        return slice(int(found[0]), int(found[-1]) + 1)
    breaks = np.flatnonzero(is_break) + 1
    groups = np.split(found, breaks)
    masses = [float(profile[group].sum()) for group in groups]
    kept = [
        group
        for group, mass in zip(groups, masses, strict=True)
        if mass >= SPECK_MASS_FRACTION * max(masses)
    ]
    return slice(int(kept[0][0]), int(kept[-1][-1]) + 1)


def _grow_over_faint_edges(
    ink: FloatArray, rows: slice, columns: slice
) -> tuple[slice, slice]:
    """Return the box widened by up to MAX_EDGE_GROWTH pixels of adjacent faint ink."""
    top, bottom, left, right = rows.start, rows.stop, columns.start, columns.stop
    faint = ink > FAINT_INK_LEVEL
    for _ in range(MAX_EDGE_GROWTH):
        if top > 0 and faint[top - 1, left:right].any():
            top -= 1
        if bottom < ink.shape[0] and faint[bottom, left:right].any():
            bottom += 1
        if left > 0 and faint[top:bottom, left - 1].any():
            left -= 1
        if right < ink.shape[1] and faint[top:bottom, right].any():
            right += 1
    return slice(top, bottom), slice(left, right)


def _stroke_width(crop: FloatArray) -> float:
    """Return the mean stroke width in pixels: twice the ink area per ink edge."""
    # Ink inside a one-pixel empty frame, so strokes at the crop's edge have edges.
    ink = np.zeros((crop.shape[0] + 2, crop.shape[1] + 2), dtype=bool)
    ink[1:-1, 1:-1] = crop >= STROKE_LEVEL
    area = int(ink.sum())
    edges = int((ink[1:] != ink[:-1]).sum() + (ink[:, 1:] != ink[:, :-1]).sum())
    return 2.0 * area / max(edges, 1)


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))

"""The C pixel statistics give what imaging.py's numpy reference gives, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mnist_backend import _digitcore, imaging
from mnist_backend.errors import NoDigitFoundError

Located = tuple[np.ndarray, slice, slice, float] | str


@pytest.fixture
def numpy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run imaging.py as it runs where the extension was not built."""
    monkeypatch.setattr(imaging, "_digitcore", None)


def _locate(gray: np.ndarray) -> Located:
    """Return what ``locate_digit`` answers, or the message of the error it raises."""
    try:
        return imaging.locate_digit(gray)
    except NoDigitFoundError as error:
        return str(error)


def _reference(gray: np.ndarray) -> Located:
    """Return what the numpy reference answers for ``gray``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imaging, "_digitcore", None)
        return _locate(gray)


def _assert_same(native: Located, reference: Located) -> None:
    if isinstance(reference, str) or isinstance(native, str):
        assert native == reference
        return
    native_ink, *native_box = native
    reference_ink, *reference_box = reference
    assert native_box == reference_box
    np.testing.assert_array_equal(native_ink, reference_ink, strict=True)


def _drawn_digit(
    rng: np.random.Generator, height: int, width: int, *, dark_ink: bool
) -> np.ndarray:
    """Return noisy paper with a few strokes and specks, as float32 0-255."""
    paper = rng.uniform(150, 250)
    gray = rng.normal(paper, rng.uniform(0, 12), (height, width))
    for _ in range(rng.integers(1, 4)):
        row, column = rng.integers(0, height), rng.integers(0, width)
        thickness = int(rng.integers(1, max(2, min(height, width) // 8)))
        length = int(rng.integers(1, max(2, max(height, width) // 2)))
        if rng.random() < 0.5:
            gray[row : row + thickness, column : column + length] = rng.uniform(0, 60)
        else:
            gray[row : row + length, column : column + thickness] = rng.uniform(0, 60)
    for _ in range(rng.integers(0, 3)):
        gray[rng.integers(0, height), rng.integers(0, width)] = 0.0
    if not dark_ink:
        gray = 255.0 - gray
    return np.clip(gray, 0, 255).astype(np.float32)


def test_the_extension_is_built() -> None:
    # Without a compiler the package falls back to numpy, several times slower per
    # request; a build that silently lost the extension must not pass unnoticed.
    assert imaging.is_native()


def test_the_c_constants_are_imaging_constants() -> None:
    assert _digitcore.CONSTANTS
    for name, value in _digitcore.CONSTANTS.items():
        assert getattr(imaging, name) == pytest.approx(value, rel=0, abs=0), name


def test_numpy_only_runs_without_the_extension(numpy_only: None) -> None:
    assert not imaging.is_native()
    gray = np.full((40, 30), 255.0, dtype=np.float32)
    gray[10:30, 12:16] = 0.0
    ink, rows, columns, width = imaging.locate_digit(gray)
    assert (rows, columns) == (slice(10, 30), slice(12, 16))
    assert width == pytest.approx(2 * 80 / 48)
    assert ink[20, 13] == pytest.approx(255.0)


@pytest.mark.parametrize("dark_ink", [True, False])
@pytest.mark.parametrize(
    "shape", [(28, 28), (1, 1), (1, 40), (40, 1), (2, 2), (3, 200), (301, 257)]
)
def test_drawn_digits_are_located_as_numpy_locates_them(
    shape: tuple[int, int], dark_ink: bool
) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] + dark_ink)
    for _ in range(20):
        gray = _drawn_digit(rng, *shape, dark_ink=dark_ink)
        _assert_same(_locate(gray), _reference(gray))


def test_a_large_noisy_photo_is_located_as_numpy_locates_it() -> None:
    rng = np.random.default_rng(7)
    gray = _drawn_digit(rng, 1024, 768, dark_ink=True)
    native = _locate(gray)
    assert not isinstance(native, str)
    _assert_same(native, _reference(gray))


@pytest.mark.parametrize(
    "gray",
    [
        np.full((50, 50), 128.0, dtype=np.float32),  # blank: no contrast
        np.zeros((1, 1), dtype=np.float32),
        # Paper of equal levels, the worst case for a naive selection.
        np.pad(np.zeros((4, 4), dtype=np.float32), 300, constant_values=255.0),
        # Every border level distinct and in order.
        np.arange(600 * 600, dtype=np.float32).reshape(600, 600) % 256,
        # Faint ink only: it stands out from the paper yet reaches no ink level.
        np.pad(np.full((10, 10), 200.0, dtype=np.float32), 20, constant_values=255.0),
    ],
    ids=["blank", "single-pixel", "plain-paper", "ramp", "faint"],
)
def test_edge_cases_are_answered_as_numpy_answers_them(
    gray: np.ndarray,
) -> None:
    _assert_same(_locate(gray), _reference(gray))


@settings(max_examples=150, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 48), st.integers(1, 48)),
        elements=st.floats(-20, 300, width=32),
    )
)
def test_any_picture_is_located_as_numpy_locates_it(gray: np.ndarray) -> None:
    _assert_same(_locate(gray), _reference(gray))


@settings(max_examples=100, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_mass_moments_are_numpy_sums(digit: np.ndarray) -> None:
    rows, columns = np.indices(digit.shape)
    values = digit.astype(np.int64)
    expected = (
        int(values.sum()),
        int((values * rows).sum()),
        int((values * columns).sum()),
    )
    assert _digitcore.mass_moments(digit) == expected


def test_centring_is_the_same_with_and_without_the_extension(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digit = np.zeros((20, 11), dtype=np.uint8)
    digit[2:18, 1:4] = 255
    digit[2:5, 1:11] = 200
    native = imaging.centre_by_mass(digit)
    monkeypatch.setattr(imaging, "_digitcore", None)
    np.testing.assert_array_equal(native, imaging.centre_by_mass(digit))


@pytest.mark.parametrize(
    ("gray", "ink"),
    [
        (np.zeros((4, 4), dtype=np.float64), np.zeros((4, 4), dtype=np.float32)),
        (np.zeros((4, 4), dtype=np.float32), np.zeros((4, 5), dtype=np.float32)),
        (np.zeros(16, dtype=np.float32), np.zeros(16, dtype=np.float32)),
        (np.zeros((4, 4), dtype=np.float32), np.zeros((4, 4), dtype=np.float32)[::2]),
    ],
    ids=["float64", "shape-mismatch", "one-dimensional", "strided"],
)
def test_locate_digit_rejects_arrays_it_cannot_read(
    gray: np.ndarray, ink: np.ndarray
) -> None:
    with pytest.raises((TypeError, ValueError, BufferError)):
        _digitcore.locate_digit(gray, ink)

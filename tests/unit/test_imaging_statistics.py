"""The fast statistics of ``imaging`` equal their general definitions, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mnist_backend.imaging import (
    EXTREME_QUANTILE,
    SHORT_PROFILE_ENTRIES,
    SORTED_STATISTICS_MAX_PIXELS,
    _heaviest_run,
    _paper_level_and_spread,
    _quantiles,
)

levels = st.floats(min_value=0, max_value=255, width=32)


@settings(max_examples=300, deadline=None)
@given(border=arrays(np.float32, st.integers(1, 600), elements=levels))
def test_paper_level_and_spread_equal_numpy_median_and_quantile(
    border: np.ndarray,
) -> None:
    paper = float(np.median(border))
    expected = (paper, float(np.quantile(np.abs(border - paper), 0.75)))

    found = _paper_level_and_spread(border)

    assert found == expected


def test_spread_interpolates_from_the_nearer_end_like_numpy() -> None:
    # Interpolating this border's quartile from the lower end differs in the last bit.
    border = np.array(
        [119.805084, 83.100266, 187.24724, 215.51149, 82.22749, 39.476948],
        dtype=np.float32,
    )
    paper = float(np.median(border))

    _, spread = _paper_level_and_spread(border)

    assert spread == float(np.quantile(np.abs(border - paper), 0.75))


def test_large_borders_use_numpy_and_agree() -> None:
    border = np.random.default_rng(0).normal(200, 9, SORTED_STATISTICS_MAX_PIXELS + 1)
    border = border.astype(np.float32)
    paper = float(np.median(border))

    found = _paper_level_and_spread(border)

    assert found == (paper, float(np.quantile(np.abs(border - paper), 0.75)))


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param([0, 0, 5, 9, 4, 0, 0], slice(2, 5), id="one-group"),
        pytest.param([0, 5, 0, 0, 9, 0, 0], slice(1, 5), id="groups-within-the-gap"),
        pytest.param(
            [9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0.1, 0], slice(0, 3), id="speck-left-out"
        ),
        pytest.param(
            [9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 8, 0], slice(0, 11), id="two-heavy-groups"
        ),
    ],
)
def test_heaviest_run_spans_the_substantial_groups(
    profile: list[float], expected: slice
) -> None:
    found = _heaviest_run(np.array(profile, dtype=np.float64))

    assert found == expected


def _heaviest_run_with_numpy(profile: np.ndarray) -> slice:
    """The definition: the span of the groups at least 5 % as heavy as the heaviest."""
    filled = np.flatnonzero(profile > 0)
    min_gap = max(3, round(0.05 * profile.size))
    groups = np.split(filled, np.flatnonzero(np.diff(filled) > min_gap) + 1)
    masses = [float(profile[group].sum()) for group in groups]
    kept = [g for g, m in zip(groups, masses, strict=True) if m >= 0.05 * max(masses)]
    return slice(int(kept[0][0]), int(kept[-1][-1]) + 1)


@settings(max_examples=300, deadline=None)
@given(
    profile=arrays(
        np.float64,
        st.integers(1, 2 * SHORT_PROFILE_ENTRIES),
        elements=st.sampled_from([0.0, 0.0, 0.0, 0.5, 3.0, 40.0]),
    )
)
def test_heaviest_run_equals_its_definition_on_short_and_long_profiles(
    profile: np.ndarray,
) -> None:
    profile[profile.size // 2] = 9.0  # a profile always holds some ink

    assert _heaviest_run(profile) == _heaviest_run_with_numpy(profile)


def _quantiles_from_histogram(gray: np.ndarray, low: float, high: float) -> tuple:
    levels = np.clip(gray, 0, 255).astype(np.uint8)
    cumulative = np.cumsum(np.bincount(levels.ravel(), minlength=256))
    found = np.searchsorted(cumulative, [low * gray.size, high * gray.size], "right")
    return float(found[0]), float(found[1])


@settings(max_examples=300, deadline=None)
@given(
    gray=arrays(
        np.float32,
        st.tuples(st.integers(1, 120), st.integers(1, 120)),
        elements=st.floats(min_value=-20, max_value=280, width=32),
    ),
    quantile=st.sampled_from([EXTREME_QUANTILE, 1e-3, 0.01, 0.25]),
)
def test_quantiles_of_small_and_large_pictures_equal_the_histogram(
    gray: np.ndarray, quantile: float
) -> None:
    expected = _quantiles_from_histogram(gray, quantile, 1 - quantile)

    assert _quantiles(gray, quantile, 1 - quantile) == expected

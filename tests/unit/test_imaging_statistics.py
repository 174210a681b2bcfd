"""The fast border statistics of ``imaging`` equal numpy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mnist_backend.imaging import (
    SORTED_STATISTICS_MAX_PIXELS,
    _heaviest_run,
    _paper_level_and_spread,
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

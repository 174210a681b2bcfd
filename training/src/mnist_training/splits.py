"""The labelled image arrays that flow between the pipelines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DigitSplit:
    """Digits of one split: ``images`` (N, 28, 28) uint8 white on black, ``labels``
    (N,) uint8 in 0-9."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.shape[1:] != (28, 28):
            raise ValueError(
                f"Expected images of shape (N, 28, 28); got {self.images.shape}."
            )
        expected = self.images.shape[0]
        if self.labels.shape != (expected,):
            raise ValueError(f"Expected {expected} labels; got {self.labels.shape}.")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

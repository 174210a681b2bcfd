# Types of the C extension built from _digitcore.c; imaging.py is its only caller.
import numpy as np
from numpy.typing import NDArray

CONSTANTS: dict[str, float | int]

def locate_digit(
    gray: NDArray[np.float32], ink: NDArray[np.float32], /
) -> tuple[int, int, int, int, int, float]: ...
def mass_moments(digit: NDArray[np.uint8], /) -> tuple[int, int, int]: ...
def png_rows(
    raw: bytes, width: int, height: int, channels: int, /
) -> tuple[bytes, bytes | None] | None: ...

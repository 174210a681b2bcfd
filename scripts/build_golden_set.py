"""Build the golden digits a candidate model must classify before it may serve.

The set is the first ``PER_DIGIT`` digits of each class of the MNIST test file, in file
order, so running this script again on the same data gives the same bytes. The test
file is never used for training, so a model cannot have memorised these digits.

Usage: python scripts/build_golden_set.py [--mnist-dir DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST_DIR = REPO_ROOT / "training" / "data" / "01_raw" / "mnist"
DEFAULT_OUTPUT = REPO_ROOT / "src" / "mnist_backend" / "golden" / "golden_digits.npz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
PER_DIGIT = 30
IMAGE_SIZE = 28
# IDX headers: magic number and dimension sizes, four bytes each.
_IMAGES_HEADER_BYTES = 16
_LABELS_HEADER_BYTES = 8


def read_idx(path: Path, header_bytes: int) -> np.ndarray:
    """Return the payload of a gzipped IDX file as a flat uint8 array."""
    with gzip.open(path, "rb") as stream:
        payload = stream.read()
    return np.frombuffer(payload[header_bytes:], dtype=np.uint8)


def select_golden_digits(
    images: np.ndarray, labels: np.ndarray, per_digit: int = PER_DIGIT
) -> tuple[np.ndarray, np.ndarray]:
    """Return the first ``per_digit`` images of each digit and their labels.

    ``images`` is uint8 (N, 28, 28) and ``labels`` uint8 (N,); the result keeps the
    file order, so it interleaves the classes the way the test file does.
    """
    chosen: list[int] = []
    for digit in range(10):
        positions = np.flatnonzero(labels == digit)[:per_digit]
        if len(positions) < per_digit:
            raise ValueError(
                f"The test file holds {len(positions)} images of digit {digit}; "
                f"expected at least {per_digit}."
            )
        chosen.extend(int(position) for position in positions)
    order = np.array(sorted(chosen))
    return images[order], labels[order]


def build_golden_set(mnist_dir: Path, output: Path) -> int:
    """Write the golden set from ``mnist_dir`` to ``output``; return how many digits."""
    labels = read_idx(mnist_dir / TEST_LABELS, _LABELS_HEADER_BYTES)
    images = read_idx(mnist_dir / TEST_IMAGES, _IMAGES_HEADER_BYTES).reshape(
        -1, IMAGE_SIZE, IMAGE_SIZE
    )
    golden_images, golden_labels = select_golden_digits(images, labels)
    # No compression: the file stays byte-identical across numpy versions' zlib.
    np.savez(output, images=golden_images, labels=golden_labels)
    return len(golden_labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, default=DEFAULT_MNIST_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    arguments = parser.parse_args()
    count = build_golden_set(arguments.mnist_dir, arguments.output)
    print(f"wrote {count} golden digits to {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures that build tiny MNIST-shaped data in memory."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

# Kedro configures logging when it is first imported, from this variable; without
# it, pytest run from the repository root would give the whole session Kedro's
# default handler on stdout.
os.environ.setdefault(
    "KEDRO_LOGGING_CONFIG", str(Path(__file__).parents[1] / "conf" / "logging.yml")
)

import numpy as np
import pytest

from mnist_training.splits import DigitSplit

FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
    "checksums": "SHA256SUMS",
}


def encode_idx_images(images: np.ndarray) -> bytes:
    header = struct.pack(">IIII", 2051, images.shape[0], 28, 28)
    return gzip.compress(header + images.astype(np.uint8).tobytes())


def encode_idx_labels(labels: np.ndarray) -> bytes:
    header = struct.pack(">II", 2049, labels.shape[0])
    return gzip.compress(header + labels.astype(np.uint8).tobytes())


def make_split(size: int, seed: int = 0) -> DigitSplit:
    """Return ``size`` random 'digits': a bright square whose position encodes the
    label, so a model can learn them in one epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=size).astype(np.uint8)
    images = np.zeros((size, 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row = 4 + (int(label) // 5) * 12
        column = 2 + (int(label) % 5) * 5
        images[index, row : row + 8, column : column + 4] = 255
    return DigitSplit(images=images, labels=labels)


def make_raw_files(train: DigitSplit, test: DigitSplit) -> dict[str, bytes]:
    files = {
        FILE_NAMES["train_images"]: encode_idx_images(train.images),
        FILE_NAMES["train_labels"]: encode_idx_labels(train.labels),
        FILE_NAMES["test_images"]: encode_idx_images(test.images),
        FILE_NAMES["test_labels"]: encode_idx_labels(test.labels),
    }
    lines = [
        f"{hashlib.sha256(data).hexdigest()}  {name}" for name, data in files.items()
    ]
    files[FILE_NAMES["checksums"]] = ("\n".join(lines) + "\n").encode()
    return files


@pytest.fixture
def file_names() -> dict[str, str]:
    return dict(FILE_NAMES)


@pytest.fixture
def tiny_train() -> DigitSplit:
    return make_split(200, seed=1)


@pytest.fixture
def tiny_test() -> DigitSplit:
    return make_split(50, seed=2)


@pytest.fixture
def raw_files(tiny_train: DigitSplit, tiny_test: DigitSplit) -> dict[str, bytes]:
    return make_raw_files(tiny_train, tiny_test)

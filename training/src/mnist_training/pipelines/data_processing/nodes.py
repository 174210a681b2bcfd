"""Nodes that turn the raw MNIST files into verified train, validation, test splits."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mnist_training.idx import (
    MnistDataError,
    decode_idx,
    parse_checksums,
    verify_checksum,
)
from mnist_training.splits import DigitSplit


def verify_raw_files(
    raw_files: Mapping[str, bytes], file_names: Mapping[str, str]
) -> dict[str, str]:
    """Return ``{file name: sha256}`` for the four MNIST files, each checked against
    the checksum file that lies beside them.

    ``file_names`` maps the roles ``train_images``, ``train_labels``, ``test_images``,
    ``test_labels`` and ``checksums`` to file names in ``raw_files``.
    """
    checksum_name = file_names["checksums"]
    if checksum_name not in raw_files:
        raise MnistDataError(f"The checksum file '{checksum_name}' is missing.")
    expected = parse_checksums(raw_files[checksum_name].decode("utf-8"))

    verified: dict[str, str] = {}
    for role in ("train_images", "train_labels", "test_images", "test_labels"):
        name = file_names[role]
        if name not in raw_files:
            raise MnistDataError(f"The MNIST file '{name}' ({role}) is missing.")
        verified[name] = verify_checksum(name, raw_files[name], expected)
    return verified


def decode_mnist(
    raw_files: Mapping[str, bytes],
    file_names: Mapping[str, str],
    checksums: Mapping[str, str],
) -> tuple[DigitSplit, DigitSplit]:
    """Return the full training split (60,000) and the test split (10,000).

    ``checksums`` is the output of ``verify_raw_files``; asking for it makes the
    pipeline decode only files whose checksums were verified.
    """
    splits = []
    for prefix in ("train", "test"):
        images_name = file_names[f"{prefix}_images"]
        labels_name = file_names[f"{prefix}_labels"]
        if images_name not in checksums or labels_name not in checksums:
            raise MnistDataError(f"The {prefix} files were not verified.")

        images = decode_idx(raw_files[images_name], name=images_name)
        labels = decode_idx(raw_files[labels_name], name=labels_name)
        if images.ndim != 3 or labels.ndim != 1:
            raise MnistDataError(
                f"'{images_name}' or '{labels_name}' has the wrong kind."
            )
        if images.shape[0] != labels.shape[0]:
            raise MnistDataError(
                f"'{images_name}' holds {images.shape[0]} images but '{labels_name}' "
                f"holds {labels.shape[0]} labels."
            )
        if labels.size and labels.max() > 9:
            raise MnistDataError(f"'{labels_name}' holds labels outside 0-9.")
        splits.append(DigitSplit(images=images.copy(), labels=labels.copy()))
    return splits[0], splits[1]


def split_train_validation(
    train_full: DigitSplit, validation_size: int, seed: int
) -> tuple[DigitSplit, DigitSplit]:
    """Return (train, validation): ``validation_size`` digits held out at random.

    The permutation depends only on ``seed``, so the same seed always holds out the
    same digits.
    """
    if not 0 < validation_size < len(train_full):
        raise ValueError(
            f"validation_size must be between 1 and {len(train_full) - 1}; "
            f"got {validation_size}."
        )
    order = np.random.default_rng(seed).permutation(len(train_full))
    held_out, kept = order[:validation_size], order[validation_size:]
    train = DigitSplit(train_full.images[kept], train_full.labels[kept])
    validation = DigitSplit(train_full.images[held_out], train_full.labels[held_out])
    return train, validation


def subsample_split(split: DigitSplit, max_size: int | None, seed: int) -> DigitSplit:
    """Return at most ``max_size`` digits of ``split`` (all of them when None).

    The test parameter set uses it to train on a few thousand digits.
    """
    if max_size is None or max_size >= len(split):
        return split
    chosen = np.sort(
        np.random.default_rng(seed).choice(len(split), max_size, replace=False)
    )
    return DigitSplit(split.images[chosen], split.labels[chosen])

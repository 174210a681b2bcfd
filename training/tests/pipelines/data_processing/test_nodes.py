from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from mnist_training.idx import MnistDataError, decode_idx
from mnist_training.pipelines.data_processing.nodes import (
    decode_mnist,
    split_train_validation,
    subsample_split,
    verify_raw_files,
)
from mnist_training.splits import DigitSplit


def _with_checksum_of(files: dict[str, bytes], name: str) -> dict[str, bytes]:
    """Return ``files`` with the checksum line of ``name`` rewritten to match."""
    lines = []
    for line in files["SHA256SUMS"].decode().splitlines():
        digest, file_name = line.split()
        if file_name == name:
            digest = hashlib.sha256(files[name]).hexdigest()
        lines.append(f"{digest}  {file_name}")
    return {**files, "SHA256SUMS": "\n".join(lines).encode()}


def test_verify_raw_files_returns_the_checksum_of_each_file(raw_files, file_names):
    checksums = verify_raw_files(raw_files, file_names)

    assert sorted(checksums) == sorted(raw_files.keys() - {"SHA256SUMS"})
    for name, digest in checksums.items():
        assert digest == hashlib.sha256(raw_files[name]).hexdigest()


def test_verify_raw_files_names_the_file_whose_checksum_differs(raw_files, file_names):
    tampered = {**raw_files, "t10k-labels-idx1-ubyte.gz": b"\x1f\x8b tampered"}

    with pytest.raises(MnistDataError, match="Checksum mismatch for 't10k-labels"):
        verify_raw_files(tampered, file_names)


def test_verify_raw_files_refuses_a_missing_checksum_file(raw_files, file_names):
    without = {k: v for k, v in raw_files.items() if k != "SHA256SUMS"}

    with pytest.raises(MnistDataError, match="checksum file 'SHA256SUMS' is missing"):
        verify_raw_files(without, file_names)


def test_decode_mnist_returns_the_encoded_digits(
    raw_files, file_names, tiny_train, tiny_test
):
    checksums = verify_raw_files(raw_files, file_names)

    train, test = decode_mnist(raw_files, file_names, checksums)

    np.testing.assert_array_equal(train.images, tiny_train.images)
    np.testing.assert_array_equal(train.labels, tiny_train.labels)
    np.testing.assert_array_equal(test.images, tiny_test.images)
    np.testing.assert_array_equal(test.labels, tiny_test.labels)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(
            struct.pack(">IIII", 2052, 1, 28, 28), "magic number 2052", id="bad-magic"
        ),
        pytest.param(
            struct.pack(">IIII", 2051, 2, 28, 28) + bytes(784),
            "needs 1584",
            id="too-short",
        ),
        pytest.param(
            struct.pack(">IIII", 2051, 1, 28, 28) + bytes(785),
            "needs 800",
            id="too-long",
        ),
        pytest.param(
            struct.pack(">II", 2051, 1), "ends inside its IDX header", id="cut-header"
        ),
        pytest.param(
            b"\x1f\x8b\x08\x00garbage", "not a readable gzip", id="corrupt-gzip"
        ),
    ],
)
def test_decode_idx_refuses_a_corrupt_file_and_names_it(payload, message):
    with pytest.raises(MnistDataError, match=message) as raised:
        decode_idx(payload, name="broken.idx")

    assert "'broken.idx'" in str(raised.value)


def test_decode_mnist_refuses_a_label_file_of_another_length(
    raw_files, file_names, tiny_test
):
    short = gzip.compress(struct.pack(">II", 2049, 3) + bytes(3))
    files = _with_checksum_of(
        {**raw_files, file_names["test_labels"]: short}, "t10k-labels-idx1-ubyte.gz"
    )
    checksums = verify_raw_files(files, file_names)

    with pytest.raises(MnistDataError, match="holds 50 images but 't10k-labels"):
        decode_mnist(files, file_names, checksums)


def _numbered(split: DigitSplit) -> DigitSplit:
    """Return ``split`` with each digit's index written into its first two pixels."""
    images = split.images.copy()
    index = np.arange(len(split))
    images[:, 0, 0], images[:, 0, 1] = index % 256, index // 256
    return DigitSplit(images=images, labels=split.labels.copy())


def _numbers(split: DigitSplit) -> set[int]:
    return {int(low) + 256 * int(high) for low, high in split.images[:, 0, :2]}


def test_split_holds_out_the_requested_number_without_overlap(tiny_train):
    numbered = _numbered(tiny_train)

    train, validation = split_train_validation(numbered, validation_size=30, seed=7)

    assert (len(train), len(validation)) == (170, 30)
    assert _numbers(train).isdisjoint(_numbers(validation))
    assert _numbers(train) | _numbers(validation) == set(range(200))


def test_split_is_reproducible_for_a_seed_and_differs_across_seeds(tiny_train):
    first = split_train_validation(tiny_train, 30, seed=7)[1]
    again = split_train_validation(tiny_train, 30, seed=7)[1]
    other = split_train_validation(tiny_train, 30, seed=8)[1]

    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)


def test_split_does_not_modify_its_input(tiny_train):
    before = tiny_train.images.copy()

    split_train_validation(tiny_train, 30, seed=7)

    np.testing.assert_array_equal(tiny_train.images, before)


@pytest.mark.parametrize("size", [0, 200, 500], ids=["none", "all", "more-than-all"])
def test_split_refuses_a_validation_size_that_leaves_nothing(tiny_train, size):
    with pytest.raises(ValueError, match="validation_size must be between 1 and 199"):
        split_train_validation(tiny_train, size, seed=7)


def test_subsample_keeps_at_most_the_requested_digits(tiny_train):
    smaller = subsample_split(tiny_train, 20, seed=3)

    assert len(smaller) == 20
    assert isinstance(smaller, DigitSplit)
    assert subsample_split(tiny_train, None, seed=3) is tiny_train

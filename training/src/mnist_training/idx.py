"""Reading MNIST's IDX files: checksums first, then a strict decode of the bytes.

The format is a big-endian header (a magic number, then one uint32 per dimension)
followed by raw uint8 values in row-major order. Anything that does not match the
header exactly is refused with the file's name in the message.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Mapping

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_EXPECTED_DIMENSIONS = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}


class MnistDataError(ValueError):
    """A raw MNIST file is missing, corrupt or does not match its checksum."""


def parse_checksums(text: str) -> dict[str, str]:
    """Return ``{file name: sha256 hex}`` from ``sha256sum``-style lines."""
    checksums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise MnistDataError(f"Checksum line {number} is not '<sha256>  <file>'.")
        checksums[parts[1].lstrip("*")] = parts[0].lower()
    return checksums


def verify_checksum(name: str, data: bytes, expected: Mapping[str, str]) -> str:
    """Return the SHA-256 of ``data`` after checking it against ``expected[name]``."""
    if name not in expected:
        raise MnistDataError(f"No checksum is recorded for '{name}'.")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected[name]:
        raise MnistDataError(
            f"Checksum mismatch for '{name}': expected {expected[name]}, got {actual}."
        )
    return actual


def decode_idx(data: bytes, *, name: str) -> np.ndarray:
    """Return the array stored in IDX ``data`` (gzip-compressed or not) as uint8.

    Images come out as (N, 28, 28) and labels as (N,). Raises MnistDataError naming
    ``name`` on a bad magic number, a header that does not fit, or a wrong length.
    """
    raw = _gunzip(data, name=name) if data[:2] == b"\x1f\x8b" else data
    if len(raw) < 4:
        raise MnistDataError(f"'{name}' is too short to hold an IDX header.")

    (magic,) = struct.unpack(">I", raw[:4])
    if magic not in _EXPECTED_DIMENSIONS:
        raise MnistDataError(
            f"'{name}' has magic number {magic}; expected {IMAGES_MAGIC} (images) "
            f"or {LABELS_MAGIC} (labels)."
        )

    dimensions = _EXPECTED_DIMENSIONS[magic]
    header_size = 4 + 4 * dimensions
    if len(raw) < header_size:
        raise MnistDataError(f"'{name}' ends inside its IDX header.")
    shape = struct.unpack(f">{dimensions}I", raw[4:header_size])

    expected_size = header_size + int(np.prod(shape))
    if len(raw) != expected_size:
        raise MnistDataError(
            f"'{name}' holds {len(raw)} bytes; its header {tuple(shape)} "
            f"needs {expected_size}."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _gunzip(data: bytes, *, name: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise MnistDataError(f"'{name}' is not a readable gzip file: {exc}") from exc

"""Catalog datasets for the files this project reads and writes.

Each one is small on purpose: the project needs raw bytes in, numpy splits and a
tensor state dict between runs, and JSON reports out, nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kedro.io import AbstractDataset, DatasetError

from mnist_training.splits import DigitSplit


class RawFolderDataset(AbstractDataset[None, dict[str, bytes]]):
    """Loads every regular file directly inside a folder as ``{name: bytes}``."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def load(self) -> dict[str, bytes]:
        if not self._path.is_dir():
            raise DatasetError(f"The raw data folder '{self._path}' does not exist.")
        return {
            entry.name: entry.read_bytes()
            for entry in sorted(self._path.iterdir())
            if entry.is_file()
        }

    def save(self, data: None) -> None:
        raise DatasetError(f"'{self._path}' holds raw data and is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class DigitSplitDataset(AbstractDataset[DigitSplit, DigitSplit]):
    """Stores a DigitSplit as an uncompressed ``.npz`` of images and labels."""

    def __init__(self, filepath: str) -> None:
        self._filepath = Path(filepath)

    def load(self) -> DigitSplit:
        with np.load(self._filepath, allow_pickle=False) as arrays:
            return DigitSplit(images=arrays["images"], labels=arrays["labels"])

    def save(self, data: DigitSplit) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        with self._filepath.open("wb") as stream:
            np.savez(stream, images=data.images, labels=data.labels)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class StateDictDataset(
    AbstractDataset[dict[str, torch.Tensor], dict[str, torch.Tensor]]
):
    """Stores a tensor state dict; loading never unpickles anything but tensors."""

    def __init__(self, filepath: str) -> None:
        self._filepath = Path(filepath)

    def load(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = torch.load(
            self._filepath, map_location="cpu", weights_only=True
        )
        return state

    def save(self, data: dict[str, torch.Tensor]) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class JsonDataset(AbstractDataset[Any, Any]):
    """Stores any JSON-serialisable value, indented for people to read."""

    def __init__(self, filepath: str) -> None:
        self._filepath = Path(filepath)

    def load(self) -> Any:
        return json.loads(self._filepath.read_text(encoding="utf-8"))

    def save(self, data: Any) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

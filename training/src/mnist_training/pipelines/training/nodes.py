"""The training node: fit the ConvNet on augmented MNIST, on the CPU, seeded."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from mnist_backend.contract import NORMALIZATION_MEAN, NORMALIZATION_STD
from mnist_backend.models.convnet import ConvNet
from mnist_training.splits import DigitSplit

from .augmentation import AugmentationParameters, augment_batch

logger = logging.getLogger(__name__)


class EpochRecord(TypedDict):
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class TrainingParameters:
    epochs: int = 15
    batch_size: int = 128
    max_learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    dropout: float = 0.3
    seed: int = 42
    num_threads: int = 0
    augmentation: AugmentationParameters = field(default_factory=AugmentationParameters)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainingParameters:
        """Build the parameters from the YAML mapping, refusing unknown keys."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown training parameters: {sorted(unknown)}.")
        options = dict(values)
        options["augmentation"] = AugmentationParameters(
            **values.get("augmentation", {})
        )
        return cls(**options)


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """Return uint8 (N, 28, 28) images as a normalised float tensor (N, 1, 28, 28)."""
    scaled = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    return scaled.sub_(NORMALIZATION_MEAN).div_(NORMALIZATION_STD)


def train_convnet(
    train: DigitSplit, validation: DigitSplit, parameters: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[EpochRecord]]:
    """Return the trained ConvNet's state dict and one record per epoch.

    Training uses AdamW with a one-cycle learning-rate schedule over ``epochs``;
    every batch is augmented on the fly. The same seed and thread count give the
    same weights.
    """
    settings = TrainingParameters.from_mapping(parameters)
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)

    model = ConvNet(dropout=settings.dropout).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.max_learning_rate,
        weight_decay=settings.weight_decay,
    )
    steps_per_epoch = -(-len(train) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings.max_learning_rate,
        epochs=settings.epochs,
        steps_per_epoch=steps_per_epoch,
    )

    images = torch.from_numpy(train.images).float().div_(255.0).unsqueeze(1)
    labels = torch.from_numpy(train.labels).long()
    validation_input = to_model_input(validation.images)
    validation_labels = torch.from_numpy(validation.labels).long()

    history: list[EpochRecord] = []
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        epoch_started = time.perf_counter()
        train_loss = _train_one_epoch(
            model, optimizer, schedule, images, labels, settings, generator
        )
        validation_loss, validation_accuracy = _validate(
            model, validation_input, validation_labels
        )
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            validation_loss=validation_loss,
            validation_accuracy=validation_accuracy,
            learning_rate=float(schedule.get_last_lr()[0]),
            seconds=time.perf_counter() - epoch_started,
        )
        history.append(record)
        _log_progress(record, settings.epochs, time.perf_counter() - started)

    state = {
        name: tensor.detach().clone().contiguous()
        for name, tensor in model.state_dict().items()
    }
    return state, history


def _train_one_epoch(
    model: ConvNet,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: TrainingParameters,
    generator: torch.Generator,
) -> float:
    model.train()
    order = torch.randperm(images.shape[0], generator=generator)
    total_loss, seen = 0.0, 0
    for start in range(0, images.shape[0], settings.batch_size):
        batch_index = order[start : start + settings.batch_size]
        batch = augment_batch(images[batch_index], settings.augmentation, generator)
        batch = batch.sub_(NORMALIZATION_MEAN).div_(NORMALIZATION_STD)
        batch = batch.contiguous(memory_format=torch.channels_last)

        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(batch), labels[batch_index])
        loss.backward()
        optimizer.step()
        schedule.step()

        total_loss += loss.item() * batch_index.numel()
        seen += batch_index.numel()
    return total_loss / seen


@torch.inference_mode()
def _validate(
    model: ConvNet, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    model.eval()
    logits = torch.cat([model(chunk) for chunk in inputs.split(1000)])
    loss = float(F.cross_entropy(logits, labels))
    accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    return loss, accuracy


def _log_progress(record: EpochRecord, epochs: int, elapsed: float) -> None:
    remaining = elapsed / record["epoch"] * (epochs - record["epoch"])
    logger.info(
        "epoch %d/%d train_loss=%.4f validation_loss=%.4f validation_accuracy=%.4f "
        "elapsed=%.0fs eta=%.0fs",
        record["epoch"],
        epochs,
        record["train_loss"],
        record["validation_loss"],
        record["validation_accuracy"],
        elapsed,
        remaining,
    )

"""The ConvNet architecture, the one definition shared by training and serving.

Training imports this class to build the network it fits; the service imports it to
rebuild the same network around a published state dict. Nothing else defines layers.
"""

from __future__ import annotations

import torch
from torch import nn

from mnist_backend.contract import ARCHITECTURE_NAME, NUM_CLASSES

__all__ = ["ARCHITECTURE_NAME", "ConvNet", "count_parameters"]


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Return a 3x3 same-padding convolution with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvNet(nn.Module):
    """One 3x3 convolution at full resolution, two at half, then a small head.

    Input is a normalised batch of shape (N, 1, 28, 28); output is logits of shape
    (N, 10). A second convolution at full resolution made an epoch 1.6 times slower
    on two cores, so the network pools early. Calibration (temperature) is applied
    by the caller, not inside the network, so the state dict stays plain tensors.
    """

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(1, 32),
            nn.MaxPool2d(2),  # 28x28 -> 14x14
            _conv_block(32, 64),
            _conv_block(64, 64),
            nn.MaxPool2d(2),  # 14x14 -> 7x7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128, bias=False),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

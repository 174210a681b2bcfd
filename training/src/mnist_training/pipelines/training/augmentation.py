"""Batch augmentation that makes MNIST digits look more like real uploads.

Uploads arrive after the service has cropped, scaled and centred them, so what is
left to learn is handwriting that leans, stretches and varies in stroke width. All
randomness comes from the generator passed in, so a seed fixes every batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentationParameters:
    """Ranges of the random transforms; zero everywhere switches augmentation off."""

    rotation_degrees: float = 12.0
    scale_min: float = 0.85
    scale_max: float = 1.15
    shear_degrees: float = 8.0
    translate_pixels: float = 2.0
    stroke_probability: float = 0.3


def augment_batch(
    images: torch.Tensor,
    parameters: AugmentationParameters,
    generator: torch.Generator,
) -> torch.Tensor:
    """Return a randomly transformed copy of ``images``, (N, 1, 28, 28) in [0, 1].

    Each image gets its own stroke-width change (thicker or thinner, with
    ``stroke_probability``) and then its own affine transform. Labels are unchanged
    by construction: no transform here flips or mirrors a digit.
    """
    varied = _vary_stroke_width(images, parameters.stroke_probability, generator)
    return _random_affine(varied, parameters, generator)


def _vary_stroke_width(
    images: torch.Tensor, probability: float, generator: torch.Generator
) -> torch.Tensor:
    if probability <= 0:
        return images
    batch = images.shape[0]
    draw = torch.rand(batch, 1, 1, 1, generator=generator)
    thicken = draw < probability / 2
    thin = (draw >= probability / 2) & (draw < probability)

    dilated = F.max_pool2d(images, kernel_size=3, stride=1, padding=1)
    eroded = -F.max_pool2d(-images, kernel_size=3, stride=1, padding=1)
    # Halfway blends: a full 3x3 erosion wipes out MNIST's two-pixel strokes.
    thicker = 0.5 * (images + dilated)
    thinner = 0.5 * (images + eroded)
    return torch.where(thicken, thicker, torch.where(thin, thinner, images))


def _random_affine(
    images: torch.Tensor,
    parameters: AugmentationParameters,
    generator: torch.Generator,
) -> torch.Tensor:
    batch, _, height, width = images.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    angle = uniform(-parameters.rotation_degrees, parameters.rotation_degrees)
    shear = uniform(-parameters.shear_degrees, parameters.shear_degrees)
    scale = uniform(parameters.scale_min, parameters.scale_max)
    shift = parameters.translate_pixels
    shift_x = uniform(-shift, shift) * 2 / width
    shift_y = uniform(-shift, shift) * 2 / height

    angle, shear = angle * math.pi / 180, shear * math.pi / 180
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # affine_grid maps output coordinates to input ones, so dividing by the scale
    # makes a scale above one enlarge the digit.
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (cos * tan - sin) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = (sin * tan + cos) / scale
    theta[:, 0, 2] = shift_x
    theta[:, 1, 2] = shift_y

    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )

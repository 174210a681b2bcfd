from __future__ import annotations

import pytest
import torch

from mnist_backend.models.convnet import ConvNet
from mnist_training.pipelines.training.augmentation import (
    AugmentationParameters,
    augment_batch,
)
from mnist_training.pipelines.training.nodes import TrainingParameters, train_convnet

NO_AUGMENTATION = AugmentationParameters(
    rotation_degrees=0.0,
    scale_min=1.0,
    scale_max=1.0,
    shear_degrees=0.0,
    translate_pixels=0.0,
    stroke_probability=0.0,
)
ONE_EPOCH = {"epochs": 1, "batch_size": 32, "num_threads": 1, "seed": 3}


@pytest.fixture
def batch(tiny_train) -> torch.Tensor:
    return torch.from_numpy(tiny_train.images[:16]).float().div(255).unsqueeze(1)


def test_augment_batch_keeps_shape_and_value_range(batch):
    augmented = augment_batch(
        batch, AugmentationParameters(), torch.Generator().manual_seed(0)
    )

    assert augmented.shape == batch.shape
    assert float(augmented.min()) >= 0.0
    assert float(augmented.max()) <= 1.0


def test_augment_batch_changes_the_images_it_is_given(batch):
    augmented = augment_batch(
        batch, AugmentationParameters(), torch.Generator().manual_seed(0)
    )

    assert not torch.allclose(augmented, batch)


def test_augment_batch_with_zero_ranges_is_the_identity(batch):
    augmented = augment_batch(batch, NO_AUGMENTATION, torch.Generator().manual_seed(0))

    torch.testing.assert_close(augmented, batch, atol=1e-5, rtol=0)


def test_augment_batch_is_reproducible_for_a_seed(batch):
    first = augment_batch(
        batch, AugmentationParameters(), torch.Generator().manual_seed(5)
    )
    again = augment_batch(
        batch, AugmentationParameters(), torch.Generator().manual_seed(5)
    )

    torch.testing.assert_close(first, again, atol=0, rtol=0)


def test_augment_batch_keeps_the_ink_of_each_digit(batch):
    """A transform that pushed digits out of the frame would silently change labels."""
    augmented = augment_batch(
        batch, AugmentationParameters(), torch.Generator().manual_seed(1)
    )

    ink_before = batch.sum(dim=(1, 2, 3))
    ink_after = augmented.sum(dim=(1, 2, 3))
    assert bool(((ink_after / ink_before) > 0.5).all())


def test_train_convnet_returns_convnet_weights_and_one_record_per_epoch(
    tiny_train, tiny_test
):
    state, history = train_convnet(tiny_train, tiny_test, ONE_EPOCH)

    assert set(state) == set(ConvNet().state_dict())
    assert [record["epoch"] for record in history] == [1]
    assert 0.0 <= history[0]["validation_accuracy"] <= 1.0
    assert history[0]["train_loss"] > 0.0


def test_train_convnet_is_reproducible_for_a_seed(tiny_train, tiny_test):
    first, _ = train_convnet(tiny_train, tiny_test, ONE_EPOCH)
    again, _ = train_convnet(tiny_train, tiny_test, ONE_EPOCH)

    for name, tensor in first.items():
        torch.testing.assert_close(tensor, again[name], atol=0, rtol=0)


def test_train_convnet_learns_a_separable_task(tiny_train):
    _, history = train_convnet(tiny_train, tiny_train, {**ONE_EPOCH, "epochs": 3})

    assert history[-1]["validation_accuracy"] > 0.8


def test_training_parameters_refuse_unknown_keys():
    with pytest.raises(ValueError, match=r"Unknown training parameters: \['epochz'\]"):
        TrainingParameters.from_mapping({"epochz": 3})

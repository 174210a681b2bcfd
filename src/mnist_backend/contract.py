"""The input contract between training and serving, in one place and free of torch.

Training normalises with these constants and the service preprocesses uploads into
the same frame; a change here is a change of model contract, so the model card
records the values it was trained with.
"""

from __future__ import annotations

IMAGE_SIZE = 28
INPUT_SHAPE = (1, IMAGE_SIZE, IMAGE_SIZE)
NUM_CLASSES = 10

# MNIST digits sit in a 20x20 box inside the 28x28 frame, centred on their centre of
# mass; uploads are brought into the same geometry before they reach the model.
DIGIT_BOX_SIZE = 20

# Mean and standard deviation of the MNIST training pixels scaled to [0, 1].
# Serving with other statistics than training quietly lowers accuracy.
NORMALIZATION_MEAN = 0.1307
NORMALIZATION_STD = 0.3081

# The network the artifact's tensors belong to; the model card must name the same.
ARCHITECTURE_NAME = "convnet-bn-v1"

MODEL_FILENAME = "convnet.pt"
ONNX_FILENAME = "convnet.onnx"
MODEL_CARD_FILENAME = "model_card.json"
MODEL_CARD_SCHEMA_VERSION = 1


def describe_preprocessing() -> dict[str, object]:
    """Return the preprocessing contract as the model card records it."""
    return {
        "input_shape": list(INPUT_SHAPE),
        "polarity": "white digit on black background",
        "digit_box_size": DIGIT_BOX_SIZE,
        "centring": "centre of mass at the frame centre",
        "normalization": {"mean": NORMALIZATION_MEAN, "std": NORMALIZATION_STD},
    }

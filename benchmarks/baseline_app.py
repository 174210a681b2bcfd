"""The baseline: a digit service written the way a typical tutorial writes one.

FastAPI with UploadFile, PIL to decode and resize, the ConvNet in torch eager mode
with torch's default thread count, one image per request, one uvicorn worker.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import FastAPI, File, UploadFile
from PIL import Image, ImageOps

from mnist_backend.models.convnet import ConvNet

MODEL_DIR = Path(__file__).resolve().parents[1] / "models"

model = ConvNet()
model.load_state_dict(torch.load(MODEL_DIR / "convnet.pt", weights_only=True))
model.eval()
card = json.loads((MODEL_DIR / "model_card.json").read_text(encoding="utf-8"))
temperature = card["calibration"]["temperature"]

app = FastAPI()


@app.post("/api/v1/predict")
async def predict(file: UploadFile = File(...)) -> dict[str, object]:  # noqa: B008
    contents = await file.read()
    image = Image.open(io.BytesIO(contents)).convert("L")
    if np.asarray(image).mean() > 127:
        image = ImageOps.invert(image)
    image = image.resize((28, 28))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.tensor((pixels - 0.1307) / 0.3081).reshape(1, 1, 28, 28)
    with torch.no_grad():
        logits = model(tensor)
        probabilities = F.softmax(logits / temperature, dim=1)[0]
    return {
        "prediction": int(probabilities.argmax()),
        "confidence": float(probabilities.max()),
        "probabilities": probabilities.tolist(),
    }

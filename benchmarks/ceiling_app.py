"""The HTTP ceiling: a FastAPI endpoint that only reads the uploaded file.

No decoding and no model: whatever this app cannot exceed on a machine, no digit
service written with FastAPI and uvicorn on it can either.
"""

from __future__ import annotations

from fastapi import FastAPI, File, UploadFile

app = FastAPI()


@app.post("/api/v1/predict")
async def read_upload(file: UploadFile = File(...)) -> dict[str, int]:  # noqa: B008
    upload = await file.read()
    return {"bytes": len(upload)}

"""The state file through which the worker processes of one server agree on a model.

A worker that reloads or rolls back on an operator's request records here which
model it now serves; the other workers read the file when they poll and follow.
The file lives in the run directory ``mnist-backend serve`` creates for its workers
and is replaced atomically, so a reader sees a whole record or the previous one.
What following means (reload, rollback) is decided in ``reload.py``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

STATE_FILENAME = "model_state.json"


@dataclass(frozen=True)
class ModelDecision:
    """One worker's record of the model every worker should serve."""

    decision_id: str
    action: str
    model_identity: str
    model_version: str


class SharedModelState:
    """Reads and writes the decision file in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self._path = run_dir / STATE_FILENAME

    def publish(self, action: str, model_identity: str, model_version: str) -> str:
        """Record the model this worker now serves; return the decision's id."""
        decision_id = uuid.uuid4().hex
        record = {
            "id": decision_id,
            "action": action,
            "model_identity": model_identity,
            "model_version": model_version,
            "pid": os.getpid(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_atomically(self._path, json.dumps(record).encode("utf-8"))
        return decision_id

    def read(self) -> ModelDecision | None:
        """Return the latest decision; None when there is none or it is unreadable."""
        try:
            record = json.loads(self._path.read_text(encoding="utf-8"))
            return ModelDecision(
                decision_id=str(record["id"]),
                action=str(record["action"]),
                model_identity=str(record["model_identity"]),
                model_version=str(record["model_version"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("shared model state unreadable; ignored")
            return None


def _write_atomically(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload``; a reader sees the old or the new file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

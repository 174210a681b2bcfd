"""Hot reload of the served model: notice a new artifact, verify it, then swap it in.

``ModelReloader`` decides when a candidate is loaded (the model card changed, an
operator asked, or another worker moved), checks it like start-up does plus the
golden digits, and only then activates it in the ``ModelHolder``; a refused candidate
never replaces the model being served. Worker processes of one ``mnist-backend
serve`` agree on the model through the state file of ``model_sync.py``. Loading
and verifying an artifact is left to the loader it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mnist_backend.artifacts import read_model_card
from mnist_backend.contract import MODEL_CARD_FILENAME
from mnist_backend.errors import ArtifactError
from mnist_backend.golden import GoldenSet, check_golden_set, load_golden_set
from mnist_backend.inference import ModelHolder, Predictor
from mnist_backend.metrics import ServiceMetrics
from mnist_backend.model_sync import SharedModelState

logger = logging.getLogger(__name__)

# How often workers look at the shared state file when card polling is off.
SYNC_INTERVAL_SECONDS = 1.0

ACTIVATED, UNCHANGED, REFUSED, ROLLED_BACK = (
    "activated",
    "unchanged",
    "refused",
    "rolled_back",
)

LoadPredictor = Callable[[Path], Predictor]
# (mtime in ns, size, inode): publishing renames a new card into place, so a
# publication always changes it, and an untouched card is not read again.
CardSignature = tuple[int, int, int]


@dataclass(frozen=True)
class ReloadResult:
    """What one reload or rollback did, for /api/info and the admin API."""

    outcome: str
    reason: str
    model_version: str | None
    at: str
    trigger: str
    code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_identity(card: Mapping[str, Any]) -> str:
    """Return the identity workers agree on: the artifacts' SHA-256s from the card.

    The state dict's checksum, and those of the ONNX export and its int8 copy when
    the card records them, name the model whichever runtime executes it; a new
    export alone is a new model too.
    """
    checksums = [str(card["artifact"]["sha256"])]
    for key in ("onnx", "onnx_int8"):
        entry = card.get(key)
        sha256 = entry.get("sha256") if isinstance(entry, Mapping) else None
        checksums.append(str(sha256) if sha256 else "-")
    return ":".join(checksums)


class ModelReloader:
    """Keeps the holder on the newest model that passes every check."""

    def __init__(
        self,
        holder: ModelHolder,
        load: LoadPredictor,
        model_dir: Path,
        *,
        accuracy_floor: float,
        interval_seconds: float,
        run_dir: Path | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._holder = holder
        self._load = load
        self._model_dir = model_dir
        self._accuracy_floor = accuracy_floor
        self._interval = interval_seconds
        self._shared_state = SharedModelState(run_dir) if run_dir is not None else None
        self._metrics = metrics
        self._lock = anyio.Lock()
        self._golden: GoldenSet | None = None
        self._card_signature: CardSignature | None = None
        self._seen_decision_id: str | None = None
        self.last_result: ReloadResult | None = None

    def remember_card(self) -> None:
        """Note the card on disk now, so polling reacts only to later publications."""
        self._card_signature = self._read_card_signature()

    async def run(self) -> None:
        """Poll the model card and the shared state until cancelled."""
        if self._interval <= 0 and self._shared_state is None:
            return
        pause = self._interval if self._interval > 0 else SYNC_INTERVAL_SECONDS
        while True:
            await asyncio.sleep(pause)
            try:
                await self.poll_once()
            except Exception:
                # A poll must never end the loop; the next one tries again.
                logger.exception("model poll failed")

    async def poll_once(self) -> None:
        """Follow the other workers' last decision, then look for a new model card."""
        await self._follow_shared_state()
        if self._interval <= 0:
            return
        signature = self._read_card_signature()
        if signature is None or signature == self._card_signature:
            return
        self._card_signature = signature
        await self.reload("poll")

    async def reload(self, trigger: str) -> ReloadResult:
        """Load the published model and serve it once it passes every check.

        Returns the result; outcome "unchanged" when it is the model already served,
        "refused" (with the failed check's code) when a check fails.
        """
        async with self._lock:
            if trigger != "poll":
                self._card_signature = self._read_card_signature()
            result = await self._reload_locked(trigger)
        if trigger == "admin" and result.outcome in {ACTIVATED, UNCHANGED}:
            self._publish_shared_state("reload")
        return result

    async def rollback(self, trigger: str) -> ReloadResult:
        """Serve the previous model again; raises NoPreviousModelError without one."""
        async with self._lock:
            left = self._holder.predictor
            restored = self._holder.rollback()
            self._announce(restored)
            result = self._record(
                ROLLED_BACK,
                f"Rolled back from {left.model_version if left else 'no model'}.",
                restored.model_version,
                trigger,
            )
            logger.info(
                "model rolled back",
                extra={
                    "model_version": restored.model_version,
                    "sha256": restored.sha256,
                    "trigger": trigger,
                },
            )
        if trigger == "admin":
            self._publish_shared_state("rollback")
        return result

    def announce_active(self) -> None:
        """Report the model served now (after start-up) in the model-info metric."""
        predictor = self._holder.predictor
        if predictor is not None:
            self._announce(predictor)

    async def _reload_locked(self, trigger: str) -> ReloadResult:
        active = self._holder.predictor
        active_identity = model_identity(active.card) if active else None
        try:
            candidate = await anyio.to_thread.run_sync(
                partial(self._load_candidate, active_identity)
            )
        except ArtifactError as exc:
            return self._refuse(exc.code, exc.detail, trigger, exc)
        except Exception as exc:
            # Whatever went wrong, a candidate that did not load cleanly never serves.
            detail = f"The candidate failed to load ({type(exc).__name__})."
            return self._refuse("internal_error", detail, trigger, exc)

        if candidate is None:
            version = active.model_version if active else None
            return self._record(
                UNCHANGED, "The published model is already served.", version, trigger
            )
        self._holder.activate(candidate)
        self._announce(candidate)
        logger.info(
            "model reloaded",
            extra={
                "path": str(candidate.path),
                "sha256": candidate.sha256,
                "model_version": candidate.model_version,
                "previous_model_version": active.model_version if active else None,
                "trigger": trigger,
            },
        )
        return self._record(
            ACTIVATED, "Passed every check.", candidate.model_version, trigger
        )

    def _load_candidate(self, active_identity: str | None) -> Predictor | None:
        """Return the verified candidate, or None when it is the model served now.

        Runs on a worker thread: reading, hashing and the golden digits take time.
        """
        card = read_model_card(self._model_dir)
        if model_identity(card) == active_identity:
            return None
        candidate = self._load(self._model_dir)
        if self._golden is None:
            self._golden = load_golden_set()
        check_golden_set(candidate.predict_batch, self._golden, self._accuracy_floor)
        return candidate

    def _refuse(
        self, code: str, detail: str, trigger: str, error: Exception
    ) -> ReloadResult:
        active = self._holder.predictor
        logger.error(
            "candidate model refused; the previous model keeps serving",
            exc_info=error,
            extra={
                "code": code,
                "model_dir": str(self._model_dir),
                "serving_model_version": active.model_version if active else None,
                "trigger": trigger,
            },
        )
        version = _card_version(self._model_dir)
        return self._record(REFUSED, detail, version, trigger, code)

    def _record(
        self,
        outcome: str,
        reason: str,
        model_version: str | None,
        trigger: str,
        code: str | None = None,
    ) -> ReloadResult:
        result = ReloadResult(
            outcome=outcome,
            reason=reason,
            model_version=model_version,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            trigger=trigger,
            code=code,
        )
        self.last_result = result
        if self._metrics is not None:
            self._metrics.count_reload(trigger, outcome, code)
        return result

    def _announce(self, predictor: Predictor) -> None:
        if self._metrics is not None:
            self._metrics.set_active_model(
                predictor.model_version, predictor.sha256, predictor.runtime_name
            )

    def _read_card_signature(self) -> CardSignature | None:
        try:
            stat = (self._model_dir / MODEL_CARD_FILENAME).stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    # Agreement between the worker processes of one server.

    def _publish_shared_state(self, action: str) -> None:
        """Record the model this worker now serves, for the other workers to follow."""
        predictor = self._holder.predictor
        if self._shared_state is None or predictor is None:
            return
        self._seen_decision_id = self._shared_state.publish(
            action, model_identity(predictor.card), predictor.model_version
        )

    async def _follow_shared_state(self) -> None:
        decision = self._shared_state.read() if self._shared_state else None
        if decision is None or decision.decision_id == self._seen_decision_id:
            return
        self._seen_decision_id = decision.decision_id
        wanted = decision.model_identity

        active, previous = self._holder.predictor, self._holder.previous
        if active is not None and model_identity(active.card) == wanted:
            return
        if previous is not None and model_identity(previous.card) == wanted:
            await self.rollback("sync")
            return
        result = await self.reload("sync")
        served = self._holder.predictor
        if served is None or model_identity(served.card) != wanted:
            # Limit: a model that exists only in another worker's memory (the target
            # of its rollback) cannot be copied; this worker keeps its own model.
            logger.warning(
                "cannot follow the other workers' model",
                extra={
                    "wanted_model_version": decision.model_version,
                    "outcome": result.outcome,
                },
            )


def _card_version(model_dir: Path) -> str | None:
    """Return the model version the card on disk names, if it can be read."""
    try:
        return str(read_model_card(model_dir)["model_version"])
    except ArtifactError:
        return None

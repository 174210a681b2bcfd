"""Build the FastAPI application and load the model once, at start-up.

``create_app`` wires settings, middleware, error handlers and routers; the lifespan
sets up logging, then verifies and warms up the model before the service reports
ready. A model that fails its checks is never served, but the process stays up so
probes can say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from mnist_backend import __version__, imaging
from mnist_backend.api.fast_path import DigitService
from mnist_backend.api.handlers import (
    UnhandledErrorMiddleware,
    register_exception_handlers,
)
from mnist_backend.api.routes import admin, health, info, playground, predict
from mnist_backend.api.routes import metrics as metrics_route
from mnist_backend.batching import Batcher
from mnist_backend.config import Settings, get_settings
from mnist_backend.cpu import (
    CoreClaim,
    claim_core,
    pin_process,
    pinning_applies,
    read_cpu_budget,
    usable_cpu_count,
)
from mnist_backend.errors import ArtifactError
from mnist_backend.inference import ModelHolder, Predictor, load_predictor
from mnist_backend.logs import (
    REQUEST_ID_HEADER,
    RequestContextMiddleware,
    configure_logging,
)
from mnist_backend.metrics import MetricsMiddleware, ServiceMetrics, mark_worker_exited
from mnist_backend.reload import ModelReloader
from mnist_backend.shutdown import ShutdownSignal

logger = logging.getLogger(__name__)

# Allocations between collections of the youngest generation once the service is up
# (Python's default is 700); see _tune_garbage_collector.
GC_YOUNG_THRESHOLD = 50_000

API_DESCRIPTION = (
    "Recognises a handwritten digit in an uploaded image with a ConvNet trained on "
    "MNIST. Every error body is `{detail, code, request_id}` and every response "
    "carries an `X-Request-ID` header."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the service application; ``settings`` replace the environment's."""
    resolved = settings if settings is not None else get_settings()

    app = DigitService(
        title="mnist-backend",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=_lifespan,
        # The service reports through its own metrics, access lines and request
        # ids; FastAPI's OpenTelemetry checks read the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = resolved
    app.state.model_holder = ModelHolder()
    # Operations: metrics, hot reload and graceful shutdown.
    app.state.metrics = ServiceMetrics()
    app.state.shutdown = ShutdownSignal()
    app.state.reloader = ModelReloader(
        app.state.model_holder,
        _predictor_loader(resolved),
        resolved.model_dir.resolve(),
        accuracy_floor=resolved.golden_accuracy_floor,
        interval_seconds=resolved.reload_interval_seconds,
        run_dir=resolved.run_dir,
        metrics=app.state.metrics,
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings

    register_exception_handlers(app)
    layers = _middleware_layers(resolved, app.state.metrics)
    for layer in layers:
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    # The plain prediction passes through the same middlewares, so it is logged,
    # counted and guarded like any route.
    app.install_fast_path(partial(_wrap_in_layers, layers))

    app.include_router(health.router)
    app.include_router(info.router)
    app.include_router(predict.router)
    app.include_router(playground.router)
    app.include_router(metrics_route.router)
    # Without a token the admin routes do not exist: they answer 404 like any path.
    if resolved.admin_token is not None:
        app.include_router(admin.router)
    return app


def _middleware_layers(settings: Settings, metrics: ServiceMetrics) -> list[Middleware]:
    """Return the service's middlewares, innermost first."""
    layers = [
        Middleware(UnhandledErrorMiddleware),
        # Inside the request context, so it still sees the access-line fields.
        Middleware(MetricsMiddleware, metrics=metrics),
        Middleware(RequestContextMiddleware),
    ]
    if settings.cors_origins:
        # Outermost, so error responses get its headers too.
        cors = Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER],
        )
        layers.append(cors)
    return layers


def _wrap_in_layers(layers: Sequence[Middleware], endpoint: ASGIApp) -> ASGIApp:
    for layer in layers:
        endpoint = layer.cls(endpoint, *layer.args, **layer.kwargs)
    return endpoint


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level, settings.log_format)
    # SecretStr fields (the admin token) dump as asterisks.
    logger.info(
        "service starting",
        extra={
            "pid": os.getpid(),
            "settings": settings.model_dump(mode="json"),
            "native_imaging": imaging.is_native(),
        },
    )
    if not imaging.is_native():
        logger.warning(
            "native imaging extension not built: preprocessing runs in numpy and "
            "costs about 0.1 ms more CPU per small upload; reinstall the package "
            "where a C compiler is present"
        )
    # First, so every thread the worker starts from here on shares its core.
    app.state.core_claim = _pin_to_core(settings)
    shutdown: ShutdownSignal = app.state.shutdown
    shutdown.install()
    reloader: ModelReloader = app.state.reloader
    # Noted before loading, so a model published during start-up is still seen.
    reloader.remember_card()
    # Decoding a large image takes a core and its memory; one per core at a time.
    app.state.preprocessing_limiter = anyio.CapacityLimiter(usable_cpu_count())
    await _load_model(app.state.model_holder, settings)
    reloader.announce_active()
    app.state.batcher = _start_batcher(
        app.state.model_holder, settings, app.state.metrics
    )
    polling = asyncio.create_task(reloader.run())
    _tune_garbage_collector(settings)
    yield
    logger.info("shutting down", extra={"pid": os.getpid()})
    polling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await polling
    await app.state.batcher.close()
    mark_worker_exited(os.getpid())
    shutdown.uninstall()


def _tune_garbage_collector(settings: Settings) -> None:
    """Collect young objects less often and leave start-up objects out; once a process.

    Python collects its youngest generation every 700 allocations of container
    objects; a request makes a few hundred, so a collection ran every few requests,
    and with the full collections that follow they made most of the c=64 p99
    (benchmarks/RESULTS.md). Frozen start-up objects (modules, the model's
    session) are never traversed again, so a full collection stays short.

    Limit: cyclic garbage is freed up to GC_YOUNG_THRESHOLD allocations later; the
    request path makes little of it, and the benchmark's peak memory includes it.
    """
    if not settings.gc_tuning or gc.get_threshold()[0] == GC_YOUNG_THRESHOLD:
        return
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
    logger.info(
        "garbage collector tuned",
        extra={"young_threshold": GC_YOUNG_THRESHOLD, "frozen": gc.get_freeze_count()},
    )


def _pin_to_core(settings: Settings) -> CoreClaim | None:
    """Pin this worker to a core of its own when the server owns its cores."""
    if settings.cpu_pinning == "off" or settings.run_dir is None:
        return None
    budget = read_cpu_budget()
    workers = settings.workers or budget.usable_cores
    if not pinning_applies(workers, budget):
        logger.info(
            "workers not pinned: the cores are shared",
            extra={"workers": workers, "affinity_cores": budget.affinity_cores},
        )
        return None
    claim = claim_core(settings.run_dir)
    if claim is not None:
        pin_process(claim.core)
    logger.info(
        "worker pinned" if claim else "worker not pinned: every core is taken",
        extra={"pid": os.getpid(), "core": claim.core if claim else None},
    )
    return claim


def _start_batcher(
    holder: ModelHolder, settings: Settings, metrics: ServiceMetrics
) -> Batcher:
    """Start the inference thread that runs this worker's batches."""
    batcher = Batcher(
        holder,
        max_batch_size=settings.max_batch_size,
        max_queue_size=settings.max_queue_size,
        deadline_seconds=settings.request_deadline_seconds,
        observer=metrics,
    )
    batcher.start()
    logger.info(
        "batching started",
        extra={
            "pid": os.getpid(),
            "max_batch_size": settings.max_batch_size,
            "max_queue_size": settings.max_queue_size,
            "request_deadline_seconds": settings.request_deadline_seconds,
            "inference_threads": settings.inference_threads,
        },
    )
    return batcher


async def _load_model(holder: ModelHolder, settings: Settings) -> None:
    """Activate the artifact in ``settings.model_dir``, or record why it is refused."""
    model_dir = settings.model_dir.resolve()
    load = partial(_predictor_loader(settings), model_dir)
    try:
        predictor = await anyio.to_thread.run_sync(load)
    except ArtifactError as exc:
        holder.fail(exc)
        logger.error(
            "model refused; predictions are unavailable",
            exc_info=True,
            extra={"model_dir": str(model_dir), "code": exc.code},
        )
        return
    except Exception as exc:
        # Whatever went wrong, a model that did not load cleanly is never served.
        holder.fail(ArtifactError(f"The model failed to load ({type(exc).__name__})."))
        logger.exception("model failed to load", extra={"model_dir": str(model_dir)})
        return

    holder.activate(predictor)
    logger.info(
        "model loaded",
        extra={
            "model_dir": str(model_dir),
            "path": str(predictor.path),
            "sha256": predictor.sha256,
            "model_version": predictor.model_version,
            "device": "cpu",
            "runtime": predictor.runtime_name,
        },
    )


def _predictor_loader(settings: Settings) -> Callable[[Path], Predictor]:
    """Return how this service loads a model directory, at start-up and on reload."""
    return partial(
        load_predictor,
        threads=settings.inference_threads,
        runtime=settings.runtime,
        precision=settings.onnx_precision,
        # A full-size batch too, so the first burst of traffic meets warm buffers.
        warm_up_batch_sizes=(1, settings.max_batch_size),
    )


app = create_app()

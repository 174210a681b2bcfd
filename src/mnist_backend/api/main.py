"""Build the FastAPI application and load the model once, at start-up.

``create_app`` wires settings, middleware, error handlers and routers; the lifespan
sets up logging, then verifies and warms up the model before the service reports
ready. A model that fails its checks is never served, but the process stays up so
probes can say why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from mnist_backend import __version__
from mnist_backend.api.handlers import (
    UnhandledErrorMiddleware,
    register_exception_handlers,
)
from mnist_backend.api.routes import health, info, playground, predict
from mnist_backend.config import Settings, get_settings
from mnist_backend.errors import ArtifactError
from mnist_backend.inference import ModelHolder, load_predictor
from mnist_backend.logs import (
    REQUEST_ID_HEADER,
    RequestContextMiddleware,
    configure_logging,
)

logger = logging.getLogger(__name__)

API_DESCRIPTION = (
    "Recognises a handwritten digit in an uploaded image with a ConvNet trained on "
    "MNIST. Every error body is `{detail, code, request_id}` and every response "
    "carries an `X-Request-ID` header."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the service application; ``settings`` replace the environment's."""
    resolved = settings if settings is not None else get_settings()

    app = FastAPI(
        title="mnist-backend",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = resolved
    app.state.model_holder = ModelHolder()
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings

    register_exception_handlers(app)
    # Added innermost first: CORS wraps everything, so error responses get its headers.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestContextMiddleware)
    if resolved.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=resolved.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER],
        )

    app.include_router(health.router)
    app.include_router(info.router)
    app.include_router(predict.router)
    app.include_router(playground.router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level, settings.log_format)
    # Decoding a large image takes a core and its memory; one per core at a time.
    app.state.preprocessing_limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
    await _load_model(app.state.model_holder, settings)
    yield
    logger.info("shutting down")


async def _load_model(holder: ModelHolder, settings: Settings) -> None:
    """Activate the artifact in ``settings.model_dir``, or record why it is refused."""
    model_dir = settings.model_dir.resolve()
    load = partial(load_predictor, model_dir, threads=settings.torch_threads)
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
            "sha256": predictor.sha256,
            "model_version": predictor.model_version,
            "device": "cpu",
        },
    )


app = create_app()

"""The ``mnist-backend`` command: ``mnist-backend serve`` runs the HTTP service.

Command-line options are turned into the ``MNIST_`` settings the app reads, so every
uvicorn worker process sees the same configuration; settings are checked here first,
so a bad value stops start-up with one readable line instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from mnist_backend import __version__
from mnist_backend.config import ENV_PREFIX, get_settings
from mnist_backend.errors import ConfigurationError
from mnist_backend.logs import configure_logging

APP_IMPORT_PATH = "mnist_backend.api.main:app"
EXIT_BAD_CONFIGURATION = 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mnist-backend`` command."""
    parser = argparse.ArgumentParser(
        prog="mnist-backend", description="Recognise handwritten digits over HTTP."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Run the HTTP service with uvicorn.")
    serve.add_argument("--host", default="127.0.0.1", help="Interface to bind.")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to bind.")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Worker processes; each loads its own copy of the model.",
    )
    serve.add_argument(
        "--model-dir",
        help=f"Directory with the artifact and model card ({ENV_PREFIX}MODEL_DIR).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command and return its exit status."""
    arguments = build_parser().parse_args(argv)
    if arguments.workers < 1:
        print("mnist-backend: --workers must be at least 1", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION

    if arguments.model_dir is not None:
        # Workers are separate processes that build their settings from the
        # environment, so the option travels as the variable it overrides.
        os.environ[f"{ENV_PREFIX}MODEL_DIR"] = arguments.model_dir
    get_settings.cache_clear()
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"mnist-backend: {exc.detail}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION

    # Configured here too, so uvicorn's own start-up lines share the format.
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        APP_IMPORT_PATH,
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        # The app configures logging and writes its own access lines.
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

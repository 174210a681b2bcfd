"""The ``mnist-backend`` command: ``mnist-backend serve`` runs the HTTP service.

Command-line options are turned into the ``MNIST_`` settings the app reads, so every
uvicorn worker process sees the same configuration; settings are checked here first,
so a bad value stops start-up with one readable line instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import uvicorn

from mnist_backend import __version__
from mnist_backend.config import ENV_PREFIX, Settings, get_settings
from mnist_backend.cpu import read_cpu_budget
from mnist_backend.errors import ConfigurationError
from mnist_backend.logs import configure_logging

# The variable prometheus-client reads; importing metrics.py here would import the
# library before the variable is set, so the name is repeated.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

APP_IMPORT_PATH = "mnist_backend.api.main:app"
EXIT_BAD_CONFIGURATION = 2
_OPTION_VARIABLES = {
    "model_dir": "MODEL_DIR",
    "workers": "WORKERS",
    "threads": "INFERENCE_THREADS",
    "runtime": "RUNTIME",
}

logger = logging.getLogger(__name__)


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
        help="Worker processes, each with its own copy of the model "
        f"({ENV_PREFIX}WORKERS; default: one per usable CPU core).",
    )
    serve.add_argument(
        "--threads",
        type=int,
        help="Intra-op threads of each worker's inference "
        f"({ENV_PREFIX}INFERENCE_THREADS; default 1).",
    )
    serve.add_argument(
        "--runtime",
        choices=["auto", "onnx", "torch"],
        help=f"Inference runtime ({ENV_PREFIX}RUNTIME; default auto: ONNX Runtime "
        "when the verified ONNX artifact is present, else torch).",
    )
    serve.add_argument(
        "--model-dir",
        help=f"Directory with the artifact and model card ({ENV_PREFIX}MODEL_DIR).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command and return its exit status."""
    arguments = build_parser().parse_args(argv)
    for option in ("workers", "threads"):
        value = getattr(arguments, option)
        if value is not None and value < 1:
            print(f"mnist-backend: --{option} must be at least 1", file=sys.stderr)
            return EXIT_BAD_CONFIGURATION

    # Workers are separate processes that build their settings from the
    # environment, so each option travels as the variable it overrides.
    for option, variable in _OPTION_VARIABLES.items():
        value = getattr(arguments, option)
        if value is not None:
            os.environ[f"{ENV_PREFIX}{variable}"] = str(value)
    get_settings.cache_clear()
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"mnist-backend: {exc.detail}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION

    # Configured here too, so uvicorn's own start-up lines share the format.
    configure_logging(settings.log_level, settings.log_format)
    workers = _log_capacity(settings)
    # uvicorn drains on SIGTERM, then raises it again once done; exiting with 0 then
    # tells a supervisor the stop was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with _shared_run_directory():
        uvicorn.run(
            APP_IMPORT_PATH,
            host=arguments.host,
            port=arguments.port,
            workers=workers,
            # The app configures logging and writes its own access lines.
            log_config=None,
            log_level=settings.log_level.lower(),
            access_log=False,
            # Requests in flight at SIGTERM get this long to finish.
            timeout_graceful_shutdown=settings.drain_timeout_seconds,
        )
    return 0


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextmanager
def _shared_run_directory() -> Iterator[Path]:
    """Give the workers of this server a fresh private directory; remove it after.

    The workers merge their Prometheus metrics in ``metrics/`` (prometheus-client's
    multiprocess mode, read from PROMETHEUS_MULTIPROC_DIR when it is first imported)
    and agree on the served model through a state file in the directory itself.
    Files from an earlier run would corrupt both, so every run starts empty.
    """
    previous = {
        name: os.environ.get(name)
        for name in (MULTIPROC_DIR_VARIABLE, f"{ENV_PREFIX}RUN_DIR")
    }
    with tempfile.TemporaryDirectory(prefix="mnist-backend-run-") as run_dir:
        metrics_dir = Path(run_dir) / "metrics"
        metrics_dir.mkdir()
        os.environ[MULTIPROC_DIR_VARIABLE] = str(metrics_dir)
        os.environ[f"{ENV_PREFIX}RUN_DIR"] = run_dir
        try:
            yield Path(run_dir)
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _log_capacity(settings: Settings) -> int:
    """Return the worker count to run, logging it with the CPU budget it came from."""
    budget = read_cpu_budget()
    workers = settings.workers or budget.usable_cores
    logger.info(
        "starting",
        extra={
            "workers": workers,
            "workers_from": "setting" if settings.workers else "usable cores",
            "inference_threads": settings.inference_threads,
            "runtime": settings.runtime,
            "usable_cores": budget.usable_cores,
            "affinity_cores": budget.affinity_cores,
            "cgroup_quota_cores": budget.quota_cores,
            "max_batch_size": settings.max_batch_size,
            "max_queue_size": settings.max_queue_size,
        },
    )
    return workers


if __name__ == "__main__":
    sys.exit(main())

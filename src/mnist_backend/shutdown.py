"""Graceful shutdown: notice SIGTERM at once, so readiness fails while requests drain.

The server (uvicorn) owns stopping: on SIGTERM it stops accepting connections, lets
the requests in flight finish within its graceful-shutdown timeout, then runs the
application's shutdown. This module only adds the flag ``/ready`` reads, set the
moment the signal arrives rather than after the drain.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class ShutdownSignal:
    """Whether this process has been asked to stop, set from its SIGTERM handler."""

    def __init__(self) -> None:
        self.is_shutting_down = False
        self._previous_handler: Any = None
        self._installed = False

    def begin(self) -> None:
        """Mark the process as shutting down; readiness answers 503 from now on."""
        self.is_shutting_down = True

    def install(self) -> bool:
        """Chain a SIGTERM handler in front of the server's; return whether it did.

        Only the main thread may set signal handlers, and only a server that handles
        SIGTERM itself (a Python handler) drains requests, so nothing is installed
        otherwise: under a test client, or when SIGTERM still has its default action.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return False
        self._previous_handler = previous
        signal.signal(signal.SIGTERM, self._handle_sigterm)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Give SIGTERM back to the handler that was there before ``install``."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._installed = False

    def _handle_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: a signal handler may interrupt a thread holding the
        # logging lock. The server logs the shutdown itself.
        self.begin()
        self._previous_handler(signum, frame)

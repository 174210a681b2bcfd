"""Start servers in their own process groups and read their CPU time and memory.

Everything is read from /proc, so the numbers cover every process a server forks
(uvicorn's supervisor, its workers, multiprocessing helpers).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT_SECONDS = 120.0


@dataclass
class Server:
    """A server process group started for one benchmark, and where it logs."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return group_pids(self.process.pid)


def start_server(
    name: str, command: list[str], port: int, log_path: Path, env: dict[str, str]
) -> Server:
    """Start ``command`` in a new session (its own process group), logging to a file."""
    with log_path.open("wb") as log:
        # The benchmark's own server commands; nothing here comes from outside.
        process = subprocess.Popen(  # noqa: S603
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    return Server(name=name, process=process, port=port, log_path=log_path)


def wait_until_ready(server: Server, path: str) -> None:
    """Poll ``path`` until it answers 200; raise if the server dies or never does."""
    give_up = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < give_up:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log_path}")
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} was not ready after {STARTUP_TIMEOUT_SECONDS}s")


def stop_server(server: Server) -> None:
    """Terminate the server's whole process group, killing it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
    # Workers may outlive the supervisor for a moment; make sure none is left.
    for pid in group_pids(server.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def group_pids(group_id: int) -> list[int]:
    """Return the live processes whose process group is ``group_id``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # After the command name: state, ppid, pgrp, ...
        if fields is not None and int(fields[2]) == group_id:
            pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """Return the user plus system CPU seconds the processes have used so far."""
    total_ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime and stime are fields 14 and 15 of /proc/<pid>/stat.
            total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def peak_memory_kib(pids: list[int]) -> dict[int, tuple[str, int]]:
    """Return each process's command line and peak resident set (VmHWM, KiB)."""
    peaks = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                shown = command.replace(b"\0", b" ").decode(errors="replace")
                peaks[pid] = (shown.strip(), int(line.split()[1]))
    return peaks


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces.
    return text[text.rindex(")") + 2 :].split()

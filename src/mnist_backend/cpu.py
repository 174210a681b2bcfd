"""How many CPU cores this process may really use, from its affinity and cgroup quota.

``os.cpu_count()`` reports the machine's cores, not the share a container is allowed;
sizing workers and threads from it oversubscribes a throttled container. This module
reads the scheduler affinity and the cgroup CPU quota (v2 ``cpu.max``, or v1 CFS
quota and period) and leaves what to do with the number to its callers. It also
pins a worker to a core of its own (``claim_core``) where the server owns its cores.
"""

from __future__ import annotations

import fcntl
import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CONTROLLER_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


@dataclass(frozen=True)
class CpuBudget:
    """The cores the scheduler lets this process run on, and the quota on them."""

    affinity_cores: int
    quota_cores: float | None

    @property
    def usable_cores(self) -> int:
        """Return the whole cores this process can keep busy, at least one.

        A fractional quota rounds up: 1.5 cores of quota keep two threads busy
        half of the time, which serves better than leaving half a core idle.
        """
        if self.quota_cores is None:
            return self.affinity_cores
        return max(1, min(self.affinity_cores, math.ceil(self.quota_cores)))


def read_cpu_budget(cgroup_root: Path = CGROUP_ROOT) -> CpuBudget:
    """Return this process's affinity and the cgroup quota under ``cgroup_root``."""
    return CpuBudget(
        affinity_cores=_affinity_cores(),
        quota_cores=read_cgroup_quota_cores(cgroup_root),
    )


def usable_cpu_count(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Return the number of whole cores this process may use (at least 1)."""
    return read_cpu_budget(cgroup_root).usable_cores


def read_cgroup_quota_cores(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """Return the cgroup CPU quota in cores, or None when there is no quota.

    Reads cgroup v2 ``cpu.max`` ("<quota> <period>" or "max <period>") first, then
    cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 means none).
    Unreadable or malformed files count as "no quota", never as an error.
    """
    # Limit: only the cgroup mounted at ``cgroup_root`` is read, not its parents;
    # a tighter quota set on an ancestor cgroup is not seen.
    v2_limit = _read_text(cgroup_root / "cpu.max")
    if v2_limit is not None:
        fields = v2_limit.split()
        if len(fields) == 2 and fields[0] != "max":
            return _quota_cores(fields[0], fields[1])
        return None

    for controller in _V1_CONTROLLER_DIRS:
        quota = _read_text(cgroup_root / controller / "cpu.cfs_quota_us")
        period = _read_text(cgroup_root / controller / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _quota_cores(quota, period)
    return None


def _quota_cores(quota_text: str, period_text: str) -> float | None:
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _affinity_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CoreClaim:
    """The core this worker runs on, held by a lock released when the process ends."""

    core: int
    lock_fd: int


def pinning_applies(workers: int, budget: CpuBudget) -> bool:
    """Return whether pinning one worker per core fits this process's CPU budget.

    It does when the scheduler lets the process run on exactly as many cores as
    there are workers and no quota takes a share of them: a dedicated machine or VM,
    a container with a cpuset, a Kubernetes pod with exclusive cores. Under a quota
    over a larger set of cores, the cores are shared with other tenants, and the
    scheduler places the workers better than a fixed choice would.
    """
    owns_its_cores = (
        budget.quota_cores is None or budget.quota_cores >= budget.affinity_cores
    )
    return workers == budget.affinity_cores and owns_its_cores


def claim_core(run_dir: Path) -> CoreClaim | None:
    """Claim an allowed core that no sibling worker holds, or return None.

    Each core is claimed through an exclusive lock on ``core-<n>.lock`` in the
    directory the workers of one server share; the kernel drops the lock when the
    process exits, so a restarted worker takes the core its predecessor left.
    """
    for core in sorted(os.sched_getaffinity(0)):
        descriptor = os.open(run_dir / f"core-{core}.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue
        return CoreClaim(core=core, lock_fd=descriptor)
    return None


def pin_process(core: int) -> None:
    """Run every thread of this process, and those it starts later, on ``core``.

    Keeping the event loop and the inference thread on one core makes each hand-off
    between them a switch on that core instead of waking another one, which costs
    about a tenth of a millisecond per request on a virtual machine
    (benchmarks/RESULTS.md).
    """
    _pin_every_thread(core)


def _pin_every_thread(core: int) -> None:
    """Pin each thread of this process to ``core``; threads started later inherit it."""
    threads = [int(name) for name in os.listdir("/proc/self/task") if name.isdigit()]
    for thread in threads or [0]:
        try:
            os.sched_setaffinity(thread, {core})
        except ProcessLookupError:
            continue  # the thread ended meanwhile

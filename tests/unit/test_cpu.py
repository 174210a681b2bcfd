from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_backend.cpu import (
    CpuBudget,
    claim_core,
    pinning_applies,
    read_cgroup_quota_cores,
)


def write_files(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii")
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"cpu.max": "150000 100000\n"}, 1.5, id="v2-one-and-a-half"),
        pytest.param({"cpu.max": "200000 100000\n"}, 2.0, id="v2-two"),
        pytest.param({"cpu.max": "max 100000\n"}, None, id="v2-unlimited"),
        pytest.param({"cpu.max": "garbage\n"}, None, id="v2-malformed"),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            0.5,
            id="v1-half",
        ),
        pytest.param(
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            3.0,
            id="v1-combined-controller",
        ),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
            id="v1-unlimited",
        ),
        pytest.param({}, None, id="no-cgroup-files"),
    ],
)
def test_cgroup_quota_is_read_in_cores(
    tmp_path: Path, files: dict[str, str], expected: float | None
) -> None:
    root = write_files(tmp_path, files)

    quota = read_cgroup_quota_cores(root)

    assert quota == expected


def test_cgroup_v2_takes_precedence_over_v1(tmp_path: Path) -> None:
    root = write_files(
        tmp_path,
        {
            "cpu.max": "100000 100000\n",
            "cpu/cpu.cfs_quota_us": "400000\n",
            "cpu/cpu.cfs_period_us": "100000\n",
        },
    )

    quota = read_cgroup_quota_cores(root)

    assert quota == 1.0


@pytest.mark.parametrize(
    ("affinity_cores", "quota_cores", "expected"),
    [
        pytest.param(8, None, 8, id="no-quota-uses-affinity"),
        pytest.param(8, 2.0, 2, id="quota-below-affinity"),
        pytest.param(8, 1.5, 2, id="fractional-quota-rounds-up"),
        pytest.param(8, 0.2, 1, id="tiny-quota-still-one"),
        pytest.param(2, 16.0, 2, id="affinity-below-quota"),
    ],
)
def test_usable_cores_are_the_smaller_of_affinity_and_quota(
    affinity_cores: int, quota_cores: float | None, expected: int
) -> None:
    budget = CpuBudget(affinity_cores=affinity_cores, quota_cores=quota_cores)

    usable = budget.usable_cores

    assert usable == expected


@pytest.mark.parametrize(
    ("workers", "budget", "expected"),
    [
        pytest.param(2, CpuBudget(affinity_cores=2, quota_cores=None), True, id="own"),
        pytest.param(
            2, CpuBudget(affinity_cores=2, quota_cores=2.0), True, id="cpuset"
        ),
        pytest.param(2, CpuBudget(2, quota_cores=1.5), False, id="quota-below-cores"),
        pytest.param(
            2, CpuBudget(64, quota_cores=2.0), False, id="quota-of-a-big-node"
        ),
        pytest.param(3, CpuBudget(2, quota_cores=None), False, id="more-workers"),
        pytest.param(1, CpuBudget(2, quota_cores=None), False, id="fewer-workers"),
    ],
)
def test_workers_are_pinned_only_where_the_server_owns_its_cores(
    workers: int, budget: CpuBudget, expected: bool
) -> None:
    assert pinning_applies(workers, budget) is expected


def test_each_worker_claims_a_different_core_until_none_is_left(
    tmp_path: Path,
) -> None:
    allowed = sorted(os.sched_getaffinity(0))

    claims = [claim_core(tmp_path) for _ in range(len(allowed) + 1)]

    assert [claim.core if claim else None for claim in claims] == [*allowed, None]
    first = claims[0]
    assert first is not None
    os.close(first.lock_fd)  # the worker holding it exits
    again = claim_core(tmp_path)
    assert again is not None
    assert again.core == allowed[0]


def test_pinned_process_and_its_later_threads_run_on_one_core() -> None:
    core = max(os.sched_getaffinity(0))
    script = (
        "import os, threading\n"
        "from mnist_backend.cpu import pin_process\n"
        f"pin_process({core})\n"
        "seen = []\n"
        "record = lambda: seen.append(os.sched_getaffinity(0))\n"
        "thread = threading.Thread(target=record)\n"
        "thread.start(); thread.join()\n"
        "print(sorted(os.sched_getaffinity(0)), sorted(seen[0]))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert result.stdout.split("\n")[0] == f"[{core}] [{core}]"

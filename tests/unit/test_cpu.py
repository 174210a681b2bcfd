from __future__ import annotations

from pathlib import Path

import pytest

from mnist_backend.cpu import CpuBudget, read_cgroup_quota_cores


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

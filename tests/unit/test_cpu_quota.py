"""Threads come from the CPU quota (cgroup v1 and v2) and the affinity mask, never the host's cores."""

from __future__ import annotations

import os
from pathlib import Path

from edgeq.runtime.cpu import quota_cores, usable_cores


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_of_the_process_own_group(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "max 100000\n")  # the root group has no limit
    _write(tmp_path / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")
    membership = ["0::/kubepods/pod1"]
    assert quota_cores(tmp_path, membership) == 1.5
    assert usable_cores(tmp_path, membership) == min(2, len(os.sched_getaffinity(0)))


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "max 100000\n")
    assert quota_cores(tmp_path, ["0::/"]) is None
    assert usable_cores(tmp_path, ["0::/"]) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "100000\n")
    _write(tmp_path / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    membership = ["4:memory:/docker/abc", "2:cpu,cpuacct:/docker/abc", "0::/"]
    assert quota_cores(tmp_path, membership) == 1.0
    assert usable_cores(tmp_path, membership) == 1


def test_cgroup_v1_unlimited_and_no_cgroup_at_all(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert quota_cores(tmp_path, ["1:cpu:/"]) is None
    assert quota_cores(tmp_path / "absent", ["0::/"]) is None


def test_a_tiny_quota_still_gets_one_thread(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "10000 100000\n")
    assert usable_cores(tmp_path, ["0::/"]) == 1

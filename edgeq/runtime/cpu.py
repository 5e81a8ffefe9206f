"""How many cores this process may really use: the CPU quota, not the host's core count.

OpenVINO sizes its thread pool from the cores it sees, and in a container limited to 2 CPUs on a
64-core host it sees 64: 64 threads then share 2 CPUs' worth of time and every inference waits on
the scheduler. The quota lives in the cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`);
the affinity mask (`taskset`, cpusets) can narrow it further. Python's `os.process_cpu_count` (3.13)
reads only the affinity, and no maintained library reads the quota, hence these few lines.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _membership() -> list[str]:
    try:
        return Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return ["0::/"]


def _own_cgroup(root: Path, lines: list[str]) -> tuple[Path | None, Path | None]:
    """(v2 directory, v1 cpu-controller directory) of the process whose /proc/PID/cgroup is `lines`."""
    v2 = v1 = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":
            candidate = root / relative
            v2 = candidate if (candidate / "cpu.max").exists() else (root if (root / "cpu.max").exists() else None)
        elif "cpu" in controllers.split(","):
            for mount in (root / "cpu,cpuacct", root / "cpu"):
                for candidate in (mount / relative, mount):
                    if (candidate / "cpu.cfs_quota_us").exists():
                        v1 = v1 or candidate
    return v2, v1


def quota_cores(root: Path = CGROUP_ROOT, membership: list[str] | None = None) -> float | None:
    """The cgroup CPU limit in cores (e.g. 1.5), or None when there is none."""
    v2, v1 = _own_cgroup(root, _membership() if membership is None else membership)
    try:
        if v2 is not None:
            quota, period = (v2 / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if v1 is not None:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def usable_cores(root: Path = CGROUP_ROOT, membership: list[str] | None = None) -> int:
    """Cores this process can keep busy: min(affinity mask, cgroup quota rounded up), at least 1."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = quota_cores(root, membership)
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))

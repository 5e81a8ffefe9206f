"""The job worker's own memory limit, so a hostile data file fails its job, never the machine.

The limit is `RLIMIT_DATA` (private writable memory: malloc, numpy arrays, OpenVINO buffers), set in
the spawned worker before anything is imported; its children (PTQ, search, accuracy control)
inherit it. `RLIMIT_AS` counts address space that is not memory: the thread arenas glibc reserves
without backing and the read-only memory maps of the calibration and validation sets; a small
quantization job reserves about five times the memory it uses, so an `RLIMIT_AS` cap is either loose or
fails honest jobs. Past the limit an allocation fails: Python raises MemoryError, which the worker
reports as ResourceExhausted.
"""

from __future__ import annotations

import resource

from edgeq.runtime.memory import machine_memory_bytes

DEFAULT_FRACTION = 0.75  # of the memory this machine (or container) has
MIN_LIMIT = 2 * 2**30


def default_memory_limit() -> int:
    """Three quarters of the machine's memory (at least 2 GiB): the rest stays with the server."""
    return max(MIN_LIMIT, int(machine_memory_bytes() * DEFAULT_FRACTION))


def apply_memory_limit(limit_bytes: int) -> None:
    """Cap this process's private writable memory (0: no cap). Never raises the hard limit."""
    if limit_bytes <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, hard))


def describe(limit_bytes: int) -> str:
    return f"{limit_bytes / 2**30:.1f} GiB" if limit_bytes > 0 else "no limit"

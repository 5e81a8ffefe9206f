"""The serving process's memory: a byte budget for requests, and glibc settings that give it back.

glibc raises its mmap threshold after a large block is freed (up to 32 MiB), so after a burst of
big requests later ones land on the heap and the freed memory stays with the process. Fixing the
threshold keeps every large buffer (a request's tensors, gRPC's message) in its own mapping that
free() returns to the system; `malloc_trim` hands back what the heap still holds once the server is
idle. No maintained library exposes mallopt, hence ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from edgeq.errors import ResourceExhausted

log = logging.getLogger("edgeq.runtime")
M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def return_freed_memory_promptly(mmap_threshold: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold (large blocks are returned to the system when freed). False off glibc."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold))


def trim() -> None:
    """Give free heap memory back to the system (cheap when there is nothing to give)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's memory limit when that is lower (a container)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_inflight_bytes() -> int:
    """A quarter of the memory, at least 256 MiB: requests being read, queued and run stay within it."""
    return max(256 << 20, machine_memory_bytes() // 4)


class ByteBudget:
    """Bytes held by admitted requests; `admit` refuses (RESOURCE_EXHAUSTED) what would exceed the limit.

    A message that is still to be read has no known size: `reserve` holds the most it may cost
    (its Reservation is provisional) and `Reservation.settle` replaces that with what it costs once
    read. A call that finds no room waits while provisional reservations are outstanding (they
    shrink as soon as their messages are read) and is refused as soon as the budget is full of
    requests whose sizes are known."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.provisional = 0  # reservations for messages not yet read
        self._waiters: list[asyncio.Future[None]] = []

    def _refusal(self, size: int) -> ResourceExhausted:
        return ResourceExhausted(
            f"the server is holding {self.used / 2**20:.1f} MiB of requests and this one needs "
            f"{size / 2**20:.1f} MiB more (--max-inflight-bytes {self.limit / 2**20:.0f} MiB); retry later")

    def admit(self, size: int) -> None:
        if self.used + size > self.limit:
            raise self._refusal(size)
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        self.wake()

    async def reserve(self, most: int, closed: Callable[[], BaseException | None] = lambda: None) -> "Reservation":
        """Hold `most` bytes (at most the whole budget) for a message before it is read; `closed()`
        returning an error ends the wait with it."""
        most = min(most, self.limit)
        while True:
            error = closed()
            if error is not None:
                raise error
            if self.used + most <= self.limit:
                self.used += most
                self.provisional += 1
                return Reservation(self, most)
            if not self.provisional:
                raise self._refusal(most)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def wake(self) -> None:
        """Let waiting `reserve` calls look again (the budget changed, or the server is stopping)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Reservation:
    """Bytes one call holds from before its message is read until it is answered."""

    def __init__(self, budget: ByteBudget, size: int):
        self.budget = budget
        self.size = size
        self.provisional = True

    def settle(self, size: int) -> None:
        """The call now holds `size` bytes; more than reserved is admitted (or refused), less is given back."""
        if size > self.size:
            self.budget.admit(size - self.size)
        else:
            self.budget.release(self.size - size)
        self.size = size
        if self.provisional:
            self.provisional = False
            self.budget.provisional -= 1
            self.budget.wake()

    def release(self) -> None:
        if self.provisional:
            self.provisional = False
            self.budget.provisional -= 1
        self.budget.release(self.size)
        self.size = 0

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

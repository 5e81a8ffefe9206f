"""Hold a real job worker at the instant right after its version is renamed into place.

No hook in the worker: the instant is reached with the two locks the worker itself takes. The
store's publish lock (`<store>/.lock`, flock) is held first, so the worker stops inside
`ModelStore.publish` just before the rename. Once the job's recorded stage is "publish" (its last
write before the rename), the jobs database's write lock is taken and the store lock released:
the worker renames its version into place and then waits on its next database write (the "done"
event, before success is recorded). Whoever holds `paused_after_publish` can now kill it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeq.store import ModelStore, VersionInfo


def _stage(db_path: Path, job_id: str) -> str:
    connection = sqlite3.connect(db_path, timeout=30)
    try:
        row = connection.execute("SELECT state, stage FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        connection.close()
    if row is None:
        return ""
    if row[0] not in ("QUEUED", "RUNNING"):
        raise RuntimeError(f"job {job_id} ended ({row[0]}) before it reached publish")
    return str(row[1])


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    with open(store / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def paused_after_publish(store: Path, db_path: Path, name: str, job_id: str,
                         timeout: float = 300) -> Iterator[VersionInfo]:
    """Yield the version `job_id` just published while its worker waits to record success.

    Enter this before the job reaches its publish stage (right after Submit is fine)."""
    deadline = time.monotonic() + timeout
    connection = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        with store_lock(store):
            while _stage(db_path, job_id) != "publish":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not reach publish in {timeout} s")
                time.sleep(0.05)
            connection.execute("BEGIN IMMEDIATE")  # the worker's next write waits from here on
        published = ModelStore(store).published_by(name, job_id)
        while published is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not publish in {timeout} s")
            time.sleep(0.01)
            published = ModelStore(store).published_by(name, job_id)
        yield published
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


def worker_pids(server_pid: int) -> list[int]:
    """The job worker processes (multiprocessing spawn children) of a server."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            command = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == server_pid and b"spawn_main" in command:
            found.append(int(status.parent.name))
    return found


def kill_workers(server_pid: int) -> list[int]:
    pids = worker_pids(server_pid)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids

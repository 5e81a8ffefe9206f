"""Runs queued jobs one at a time, each in its own spawned worker process.

The server's inference stays responsive because NNCF works in another process; a crash of that
process (segfault, OOM kill) fails only its job; cancel asks nicely, then kills after a grace period.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgeq import childproc
from edgeq.jobs.db import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobDB
from edgeq.jobs.limits import default_memory_limit, describe
from edgeq.jobs.worker import run_job
from edgeq.store import ModelStore

log = logging.getLogger("edgeq.jobs")
CANCEL_GRACE_S = 5.0
_NATIVE_FAILURES = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)  # what a failed allocation in C++ may end in


class JobRunner:
    def __init__(self, store_root: Path, state_root: Path, db: JobDB, on_published: Callable[[], None] | None = None,
                 memory_limit: int | None = None):
        """`memory_limit`: bytes of private memory each worker may use (None: from the machine; 0: none)."""
        self.store_root = store_root
        self.state_root = state_root  # uploads live here
        self.db = db
        self.on_published = on_published
        self.memory_limit = default_memory_limit() if memory_limit is None else memory_limit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgeq-job-runner", daemon=True)
        self.current: multiprocessing.process.BaseProcess | None = None
        self.current_job: str | None = None

    def start(self) -> None:
        """Clear what a killed worker left (staging dirs), make the jobs agree with the store, then run."""
        from edgeq.jobs.recovery import reconcile

        store = self._store()
        swept = store.sweep_staging()
        if swept:
            log.warning("removed %d staging dir(s) left by stopped workers", swept)
        outcome = reconcile(self.db, store)
        for job_id in outcome.published:
            log.warning("job %s was running when the server stopped, after it published: marked succeeded", job_id)
        for job_id in outcome.interrupted:
            log.warning("job %s was running when the server stopped: marked failed", job_id)
        for job_id in outcome.lost:
            log.warning("job %s succeeded, but its version is not in the store any more: marked failed", job_id)
        log.info("job workers run with a memory limit of %s", describe(self.memory_limit))
        self._thread.start()

    def _store(self) -> ModelStore:
        return ModelStore(self.store_root)

    def _settle(self, job_id: str, error: str, state: str = FAILED) -> str:
        """A worker is gone without recording an outcome: what the store shows decides it."""
        from edgeq.jobs.recovery import settle

        return settle(self.db, self._store(), self.db.get(job_id), error, state)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a running job is marked interrupted and its worker killed."""
        self._stop.set()
        self._wake.set()
        process, job_id = self.current, self.current_job
        if process is not None and process.is_alive():
            process.kill()
            process.join(timeout)
            if job_id:
                self._settle(job_id, "interrupted: the server shut down while the job was running")
        self._thread.join(timeout)

    def _loop(self) -> None:
        context = multiprocessing.get_context("spawn")
        while not self._stop.is_set():
            record = self.db.next_queued()
            if record is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self.db.mark_running(record.id)
            # Not a daemon: it spawns the accuracy-control child. It dies with us (PR_SET_PDEATHSIG).
            process = childproc.process(context, run_job, (str(self.store_root), str(self.state_root),
                                                           str(self.db.path), record.id, self.memory_limit),
                                        name=f"edgeq-job-{record.id}", daemon=False)
            self.current, self.current_job = process, record.id
            process.start()
            cancel_seen_at: float | None = None
            while process.is_alive() and not self._stop.is_set():
                process.join(0.5)
                if self.db.cancel_requested(record.id):
                    cancel_seen_at = cancel_seen_at or time.monotonic()
                    if time.monotonic() - cancel_seen_at > CANCEL_GRACE_S:
                        process.kill()
                        process.join()
            if self._stop.is_set():
                return
            self.current, self.current_job = None, None
            final = self.db.get(record.id)
            if final.state == RUNNING:  # the worker died without recording an outcome (perhaps after publishing)
                if self._store().sweep_staging():
                    log.info("removed the staging dirs of job %s's worker", record.id)
                if final.cancel_requested:
                    state = self._settle(record.id, "cancelled", CANCELLED)
                else:
                    state = self._settle(record.id, self._crash_message(process.exitcode or 0))
                if state == SUCCEEDED:
                    log.warning("job %s: its worker died after publishing version %d; marked succeeded",
                                record.id, self.db.get(record.id).version)
                final = self.db.get(record.id)
            if final.state == SUCCEEDED and self.on_published is not None:
                self.on_published()

    def _crash_message(self, code: int) -> str:
        if code >= 0:
            return f"the worker process crashed (exit code {code})"
        sig = signal.Signals(-code)
        hint = ""
        if sig in _NATIVE_FAILURES and self.memory_limit > 0:
            hint = f"; it runs under a memory limit of {describe(self.memory_limit)}, and native code may end this way when an allocation fails"
        return f"the worker process crashed (signal {sig.name}{hint})"

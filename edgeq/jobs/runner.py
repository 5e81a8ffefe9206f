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
from edgeq.jobs.db import CANCELLED, FAILED, RUNNING, JobDB
from edgeq.jobs.worker import run_job

log = logging.getLogger("edgeq.jobs")
CANCEL_GRACE_S = 5.0


class JobRunner:
    def __init__(self, store_root: Path, state_root: Path, db: JobDB, on_published: Callable[[], None] | None = None):
        self.store_root = store_root
        self.state_root = state_root  # uploads live here
        self.db = db
        self.on_published = on_published
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgeq-job-runner", daemon=True)
        self.current: multiprocessing.process.BaseProcess | None = None
        self.current_job: str | None = None

    def start(self) -> None:
        interrupted = self.db.recover()
        for job_id in interrupted:
            log.warning("job %s was running when the server stopped: marked failed", job_id)
        self._thread.start()

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
                self.db.fail(job_id, "interrupted: the server shut down while the job was running")
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
                                                           str(self.db.path), record.id),
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
            if final.state == RUNNING:  # the worker died without recording an outcome
                if final.cancel_requested:
                    self.db.fail(record.id, "cancelled", CANCELLED)
                else:
                    code = process.exitcode or 0
                    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    self.db.fail(record.id, f"the worker process crashed ({how})", FAILED)
            elif final.state == "SUCCEEDED" and self.on_published is not None:
                self.on_published()

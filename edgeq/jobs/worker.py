"""The worker process: runs one job's pipeline and records progress and outcome in SQLite.

Started with the spawn method, so it shares nothing with the server but the store on disk.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path


def die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no orphan outlives a crashed server."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_job(store_root: str, state_root: str, db_path: str, job_id: str) -> None:
    die_with_parent()
    from edgeq._offline import disable_telemetry, quiet_nncf

    disable_telemetry()
    quiet_nncf()
    from edgeq.artifacts import ArtifactStore
    from edgeq.errors import Cancelled, EdgeqError
    from edgeq.jobs.db import CANCELLED, JobDB
    from edgeq.jobs.spec import JobSpec
    from edgeq.quantization.pipeline import run
    from edgeq.report.summary import summary_lines
    from edgeq.store import ModelStore

    db = JobDB(db_path)
    record = db.get(job_id)
    store = ModelStore(store_root)
    workdir = store.staging_dir()
    last_check = [0.0, False]

    def cancelled() -> bool:
        now = time.monotonic()
        if now - last_check[0] > 0.5:
            last_check[0], last_check[1] = now, db.cancel_requested(job_id)
        return bool(last_check[1])

    def on_event(event) -> None:  # type: ignore[no-untyped-def]
        db.progress(job_id, event.stage, event.fraction, event.message, event.metrics)

    try:
        spec = JobSpec.from_dict(record.spec)
        request = spec.to_request(ArtifactStore(state_root), Path(store_root), workdir)
        result = run(request, on_event, cancelled)
        report = result.report.to_dict()
        summary = {"summary": summary_lines(result.report), **{key: report[key] for key in ("accuracy", "fallback", "speed_gate")}}
        db.succeed(job_id, result.version, summary, result.budget_met)
    except Cancelled as error:
        db.fail(job_id, str(error), CANCELLED)
    except EdgeqError as error:
        db.fail(job_id, f"{type(error).__name__}: {error}")
    except BaseException as error:  # noqa: BLE001 - a job's failure is data, not a crash of the worker
        db.fail(job_id, f"internal error: {type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)

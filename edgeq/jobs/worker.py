"""The worker process: runs one job's pipeline and records progress and outcome in SQLite.

Started with the spawn method, so it shares nothing with the server but the store on disk.
"""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path

from edgeq.artifacts import ArtifactStore
from edgeq.errors import Cancelled, EdgeqError
from edgeq.jobs.db import CANCELLED, FAILED, JobDB
from edgeq.jobs.limits import apply_memory_limit, describe
from edgeq.jobs.recovery import job_result, settle
from edgeq.jobs.spec import JobSpec
from edgeq.store import ModelStore


def run_job(store_root: str, state_root: str, db_path: str, job_id: str, memory_limit: int = 0) -> None:
    """The worker's body; started by `childproc.process`, so it is already offline and dies with the server.

    `memory_limit`: bytes of private memory for this process and its children (0: no limit)."""
    apply_memory_limit(memory_limit)  # before the heavy imports: the limit covers everything that follows
    # The pipeline loads OpenVINO and the quantization extra: only in the worker, never in the server.
    from edgeq.quantization.pipeline import run

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

    stage = ["start"]

    def on_event(event) -> None:  # type: ignore[no-untyped-def]
        stage[0] = event.stage
        db.progress(job_id, event.stage, event.fraction, event.message, event.metrics)

    def out_of_memory(what: str) -> str:
        return artifacts.name_files(f"ResourceExhausted: the job ran out of memory during {stage[0]} (its worker is "
                                    f"limited to {describe(memory_limit)}): {what}")

    artifacts = ArtifactStore(state_root)
    failure: tuple[str, str] | None = None  # recorded after the except block has released the failed frames
    try:
        spec = JobSpec.from_dict(record.spec)
        request = spec.to_request(artifacts, Path(store_root), workdir)
        request.job_id = job_id  # named in the version's manifest: recovery after a crash reads it there
        result = run(request, on_event, cancelled)
        summary, met = job_result(result.report)
        db.succeed(job_id, result.version, summary, met)
    except Cancelled as error:
        failure = (str(error), CANCELLED)
    except EdgeqError as error:
        failure = (artifacts.name_files(f"{type(error).__name__}: {error}"), FAILED)
    except MemoryError as error:
        failure = (out_of_memory(str(error) or "an allocation failed"), FAILED)
    except BaseException as error:  # noqa: BLE001 - a job's failure is data, not a crash of the worker
        if memory_limit > 0 and _allocation_failed(error):  # native code (a loader, OpenVINO) hit the limit
            failure = (out_of_memory(f"{type(error).__name__}: {_last_line(error)}"), FAILED)
        else:
            failure = (artifacts.name_files(f"internal error: {type(error).__name__}: {error}\n"
                                            f"{traceback.format_exc(limit=3)}"), FAILED)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure is not None:
        import gc

        gc.collect()  # after a MemoryError: free what the failed stage held before writing the outcome
        # A failure after the version went live (recording success failed) is still a success: the store decides.
        settle(db, store, db.get(job_id), *failure)


def _allocation_failed(error: BaseException) -> bool:
    """Whether a native library's error says an allocation failed (how RLIMIT_DATA shows there)."""
    import errno

    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return True
    if not isinstance(error, (ImportError, OSError, RuntimeError)):
        return False
    text = str(error).lower()
    return any(sign in text for sign in ("failed to map segment", "cannot allocate memory", "can't alloc",
                                         "bad_alloc", "out of memory"))


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "an allocation failed"

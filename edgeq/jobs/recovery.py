"""Make the jobs database agree with the store after a worker or the server died.

The store is the truth about what was published: every version's manifest names the job that
published it (`ModelStore.publish(job=...)`), and a worker publishes before it records success.
So a job whose worker is gone is SUCCEEDED if its version is in the store (its result read back
from the version's edgeq.json), and FAILED otherwise; a job recorded SUCCEEDED whose version is
not in the store any more is FAILED, unless `ModelStore.delete` removed that version on purpose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from edgeq.jobs.db import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobDB, JobRecord
from edgeq.report.summary import summary_lines
from edgeq.store import ModelStore, VersionInfo

if TYPE_CHECKING:
    from edgeq.report.model import Report

INTERRUPTED = "interrupted: the server stopped while the job was running; submit it again"


def job_result(report: Report) -> tuple[dict[str, Any], bool]:
    """(the result recorded for a job, whether its accuracy budget was met) from its report."""
    gate = report.speed_gate
    summary = {"summary": summary_lines(report), "accuracy": asdict(report.accuracy),
               "fallback": asdict(report.fallback), "speed_gate": asdict(gate) if gate else None}
    return summary, report.accuracy.met


def record_published(db: JobDB, record: JobRecord, info: VersionInfo, recovered: bool) -> None:
    from edgeq.report.model import Report  # its sections' types import the quantization package: only when read back

    try:
        result, met = job_result(Report.from_dict(info.report()))
    except (KeyError, TypeError, ValueError) as error:  # an edgeq.json we cannot summarise: the version still stands
        result, met = {"summary": [f"published version {info.version}; its report could not be read ({error})"]}, False
    db.succeed(record.id, info.version, result, met, recovered=recovered)


def settle(db: JobDB, store: ModelStore, record: JobRecord, error: str, state: str = FAILED,
           recovered: bool = False) -> str:
    """The outcome of a job whose worker is gone without recording one: what the store shows."""
    info = store.published_by(record.target_name, record.id)
    if info is not None:
        record_published(db, record, info, recovered)
        return SUCCEEDED
    db.fail(record.id, error, state)
    return state


@dataclass
class Reconciliation:
    published: list[str] = field(default_factory=list)  # RUNNING -> SUCCEEDED: the store has their version
    interrupted: list[str] = field(default_factory=list)  # RUNNING -> FAILED: nothing published
    lost: list[str] = field(default_factory=list)  # SUCCEEDED -> FAILED: their version is missing
    deleted: list[str] = field(default_factory=list)  # SUCCEEDED, version deleted on purpose since


def reconcile(db: JobDB, store: ModelStore) -> Reconciliation:
    """At start-up, before any worker runs: settle RUNNING jobs, check SUCCEEDED ones against the store."""
    outcome = Reconciliation()
    for record in db.in_state(RUNNING):
        if settle(db, store, record, INTERRUPTED, recovered=True) == SUCCEEDED:
            outcome.published.append(record.id)
        else:
            outcome.interrupted.append(record.id)
    versions: dict[str, dict[int, VersionInfo]] = {}
    for record in db.in_state(SUCCEEDED):
        if record.id in outcome.published:
            continue
        if record.target_name not in versions:
            versions[record.target_name] = {v.version: v for v in store.versions(record.target_name)}
        info = versions[record.target_name].get(record.version)
        if info is not None and info.job in (None, record.id):  # None: published before manifests named jobs
            continue
        if store.deleted(record.target_name, record.version, record.id):
            db.note(record.id, f"published version {record.version} (deleted from the store since)")
            outcome.deleted.append(record.id)
            continue
        why = "is not in the store" if info is None else f"now holds another job's model ({info.job})"
        db.lose(record.id, f"lost: version {record.version} of {record.target_name!r} {why}, though this job published "
                           "it (the store was restored from an older copy or changed by hand); submit the job again")
        outcome.lost.append(record.id)
    return outcome


def contradictions(db: JobDB, store: ModelStore, idle: bool = True) -> list[str]:
    """Where the jobs database and the store disagree (empty: they agree). `idle`: no worker runs
    now, so no job may be RUNNING. Used by the crash tests and benchmarks/crash_jobs.py."""
    problems = []
    jobs = {record.id: record for state in (RUNNING, SUCCEEDED, FAILED, CANCELLED, QUEUED)
            for record in db.in_state(state)}
    if idle:
        problems += [f"job {job_id} is RUNNING with no worker" for job_id, r in jobs.items() if r.state == RUNNING]
    for name in store.names():
        for info in store.versions(name):
            job = info.job
            if job is None:
                continue
            record = jobs.get(job)
            if record is None:
                problems.append(f"{name} version {info.version} names job {job}, which is not in the database")
            elif record.state != SUCCEEDED or record.version != info.version:
                problems.append(f"{name} version {info.version} was published by job {job}, "
                                f"which says {record.state} version {record.version}")
    for record in jobs.values():
        if record.state != SUCCEEDED:
            continue
        found = next((v for v in store.versions(record.target_name) if v.version == record.version), None)
        if found is None and not store.deleted(record.target_name, record.version, record.id):
            problems.append(f"job {record.id} says SUCCEEDED version {record.version}, which is not in the store")
        elif found is not None and found.job not in (None, record.id):
            problems.append(f"job {record.id} says SUCCEEDED version {record.version}, which job {found.job} published")
    return problems

"""Job records in SQLite (`<store>/.jobs.sqlite`), shared by the server and its worker process."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.errors import FailedPrecondition, NotFound, ResourceExhausted

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    target_name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT '',
    fraction REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    metrics_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT NOT NULL DEFAULT '',
    budget_met INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""
# Columns added after the first schema: (name, declaration) added to older databases on open.
_ADDED_COLUMNS = (
    # 1: the outcome was read back from the store at start-up (the worker published, then died
    # before recording it), so the client that submitted it never heard the end: the first
    # resubmission of the identical spec gets this job back instead of a duplicate version.
    ("recovered", "INTEGER NOT NULL DEFAULT 0"),
)


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: str
    target_name: str
    spec: dict[str, Any]
    version: int
    error: str
    stage: str
    fraction: float
    message: str
    metrics: dict[str, Any]
    result: dict[str, Any]
    budget_met: bool
    cancel_requested: bool
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class JobDB:
    def __init__(self, path: str | Path, max_queued: int = 16):
        self.path = Path(path)
        self.max_queued = max_queued
        with self._connect() as db:
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, declaration in _ADDED_COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.row_factory = sqlite3.Row
        return connection

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        connection = self._connect()
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def create(self, target_name: str, spec: dict[str, Any]) -> JobRecord:
        """Queue a job; or, when this spec is a retry of a job whose outcome was recovered from the
        store after a crash, return that job (once), so the retry does not publish a duplicate."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            retried = _recovered_twin(connection, target_name, spec)
            if retried is not None:
                connection.execute("UPDATE jobs SET recovered = 0 WHERE id = ?", (retried,))
                connection.execute("COMMIT")
                return self.get(retried)
            queued = connection.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", (QUEUED, RUNNING)).fetchone()[0]
            if queued >= self.max_queued:
                connection.execute("ROLLBACK")
                raise ResourceExhausted(f"{queued} jobs are queued or running (limit {self.max_queued}); retry later")
            job_id = uuid.uuid4().hex[:16]
            now = time.time()
            connection.execute(
                "INSERT INTO jobs (id, state, target_name, spec_json, message, created, updated) VALUES (?,?,?,?,?,?,?)",
                (job_id, QUEUED, target_name, json.dumps(spec), "queued", now, now))
            connection.execute("COMMIT")
        finally:
            connection.close()
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        rows = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"job {job_id!r} does not exist")
        return _record(rows[0])

    def recent(self, limit: int = 100) -> list[JobRecord]:
        return [_record(r) for r in self._execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))]

    def next_queued(self) -> JobRecord | None:
        rows = self._execute("SELECT * FROM jobs WHERE state = ? ORDER BY created LIMIT 1", (QUEUED,))
        return _record(rows[0]) if rows else None

    def count(self, state: str) -> int:
        return int(self._execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,))[0][0])

    def mark_running(self, job_id: str) -> None:
        self._update(job_id, state=RUNNING, message="starting worker", stage="start")

    def progress(self, job_id: str, stage: str, fraction: float, message: str, metrics: dict[str, Any]) -> None:
        self._update(job_id, stage=stage, fraction=fraction, message=message, metrics_json=json.dumps(metrics, default=str))

    def succeed(self, job_id: str, version: int, result: dict[str, Any], budget_met: bool,
                recovered: bool = False) -> None:
        """`recovered`: the outcome was read from the store at start-up, not reported by the worker."""
        message = f"published version {version}" + (" (recorded at restart, from the store)" if recovered else "")
        self._update(job_id, only_if_running=True, state=SUCCEEDED, version=version, result_json=json.dumps(result, default=str),
                     budget_met=int(budget_met), fraction=1.0, stage="done", message=message, error="",
                     recovered=int(recovered))

    def fail(self, job_id: str, error: str, state: str = FAILED) -> None:
        """Final: a job that already ended keeps its first outcome."""
        self._update(job_id, only_if_running=True, state=state, error=error, message=error)

    def request_cancel(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record.finished:
            raise FailedPrecondition(f"job {job_id} already ended ({record.state})")
        if record.state == QUEUED:
            self.fail(job_id, "cancelled before it started", CANCELLED)
        else:
            self._update(job_id, cancel_requested=1, message="cancelling")
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def in_state(self, state: str) -> list[JobRecord]:
        return [_record(r) for r in self._execute("SELECT * FROM jobs WHERE state = ? ORDER BY created", (state,))]

    def lose(self, job_id: str, reason: str) -> None:
        """A SUCCEEDED job whose version is not in the store any more: FAILED, saying why."""
        self._execute("UPDATE jobs SET state = ?, error = ?, message = ?, recovered = 0, updated = ? "
                      "WHERE id = ? AND state = ?", (FAILED, reason, reason, time.time(), job_id, SUCCEEDED))

    def note(self, job_id: str, message: str) -> None:
        """Change a finished job's message only (e.g. its version was deleted since)."""
        self._execute("UPDATE jobs SET message = ?, recovered = 0, updated = ? WHERE id = ?",
                      (message, time.time(), job_id))

    def _update(self, job_id: str, only_if_running: bool = False, **fields: Any) -> None:
        fields["updated"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        guard = f" AND state IN ('{QUEUED}', '{RUNNING}')" if only_if_running else ""
        self._execute(f"UPDATE jobs SET {assignments} WHERE id = ?{guard}", (*fields.values(), job_id))


def _recovered_twin(connection: sqlite3.Connection, target_name: str, spec: dict[str, Any]) -> str | None:
    """The id of a recovered, not yet retried job with exactly this spec (None: there is none)."""
    canonical = json.dumps(spec, sort_keys=True, default=str)
    rows = connection.execute("SELECT id, spec_json FROM jobs WHERE recovered = 1 AND state = ? AND target_name = ? "
                              "ORDER BY created DESC", (SUCCEEDED, target_name)).fetchall()
    return next((str(row["id"]) for row in rows
                 if json.dumps(json.loads(row["spec_json"]), sort_keys=True, default=str) == canonical), None)


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"], state=row["state"], target_name=row["target_name"], spec=json.loads(row["spec_json"]),
        version=row["version"], error=row["error"], stage=row["stage"], fraction=row["fraction"],
        message=row["message"], metrics=json.loads(row["metrics_json"] or "{}"),
        result=json.loads(row["result_json"]) if row["result_json"] else {}, budget_met=bool(row["budget_met"]),
        cancel_requested=bool(row["cancel_requested"]), created=row["created"], updated=row["updated"])

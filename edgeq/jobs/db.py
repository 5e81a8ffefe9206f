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
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
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

    def succeed(self, job_id: str, version: int, result: dict[str, Any], budget_met: bool) -> None:
        self._update(job_id, only_if_running=True, state=SUCCEEDED, version=version, result_json=json.dumps(result, default=str),
                     budget_met=int(budget_met), fraction=1.0, stage="done", message=f"published version {version}")

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

    def recover(self) -> list[str]:
        """After a restart: jobs that were running died with the old process; mark them failed."""
        rows = self._execute("SELECT id FROM jobs WHERE state = ?", (RUNNING,))
        for row in rows:
            self.fail(row[0], "interrupted: the server stopped while the job was running; submit it again")
        return [row[0] for row in rows]

    def _update(self, job_id: str, only_if_running: bool = False, **fields: Any) -> None:
        fields["updated"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        guard = f" AND state IN ('{QUEUED}', '{RUNNING}')" if only_if_running else ""
        self._execute(f"UPDATE jobs SET {assignments} WHERE id = ?{guard}", (*fields.values(), job_id))


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"], state=row["state"], target_name=row["target_name"], spec=json.loads(row["spec_json"]),
        version=row["version"], error=row["error"], stage=row["stage"], fraction=row["fraction"],
        message=row["message"], metrics=json.loads(row["metrics_json"] or "{}"),
        result=json.loads(row["result_json"]) if row["result_json"] else {}, budget_met=bool(row["budget_met"]),
        cancel_requested=bool(row["cancel_requested"]), created=row["created"], updated=row["updated"])

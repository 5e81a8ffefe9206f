"""Jobs and the store agree after a crash: recovery reconciles both ways; a retry is no duplicate."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from edgeq.jobs.db import FAILED, QUEUED, RUNNING, SUCCEEDED, JobDB
from edgeq.jobs.recovery import INTERRUPTED, contradictions, reconcile
from edgeq.quantization.accuracy import Budget
from edgeq.quantization.recipe import Recipe
from edgeq.report.model import (AccuracySection, CalibrationData, CpuSection, DataSection, FallbackSection, LayersSection,
                                ModelSection, Report, SizeSection, ValidationData)
from edgeq.sources.spec import InputSpec
from edgeq.store import ModelStore
from edgeq.store.repository import STAGING

SPEC = {"target_name": "vit", "timm": "edgeq_vit_fmnist", "calibration_artifact": "ab" * 32, "max_drop": 0.5}


def _report(met: bool = True) -> dict:
    """A complete edgeq.json (recovery reads it back as a typed Report)."""
    return Report(
        "0", "2025-01-01T00:00:00+00:00",
        ModelSection("vit", "timm:edgeq_vit_fmnist", InputSpec("image", (1, 28, 28)), "logits", None, []),
        DataSection(CalibrationData("cal.npz", 100, 100), ValidationData(None, 30, True, True)), Recipe(), None, [],
        AccuracySection("agreement", 1.0, 0.97, 0.97, 0.03, 0.03, Budget(0.5), met, "met"),
        FallbackSection(ran=False, status="not needed"),
        LayersSection(12, 10, 2, {"blocks.0.fc1": 21.5}, {}), SizeSection(4_000_000, 1_000_000, 4.0), None, None,
        CpuSection("cpu", [], "f32", [], "2025"), {"total": 1.0}, [],
    ).to_dict()


def _publish(store: ModelStore, job: str | None, name: str = "vit", met: bool = True) -> int:
    staged = store.staging_dir()
    (staged / "model.xml").write_text("<xml/>")
    (staged / "model.bin").write_bytes(os.urandom(16))
    (staged / "edgeq.json").write_text(json.dumps(_report(met)))
    return store.publish(name, staged, {"model": name}, job=job).version


def _running(db: JobDB, spec: dict = SPEC) -> str:
    job = db.create(spec["target_name"], spec).id
    db.mark_running(job)
    return job


def test_a_running_job_whose_version_is_in_the_store_succeeds_with_its_report(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    version = _publish(store, job, met=False)  # ... and the worker was killed before db.succeed
    assert store.get("vit").job == job
    outcome = reconcile(db, store)
    record = db.get(job)
    assert outcome.published == [job] and outcome.interrupted == []
    assert (record.state, record.version, record.error) == (SUCCEEDED, version, "")
    assert record.budget_met is False and record.result["accuracy"]["final"] == 0.97
    assert record.result["summary"][0] == "model vit from timm:edgeq_vit_fmnist"
    assert "recorded at restart" in record.message
    assert contradictions(db, store) == []


def test_a_running_job_that_published_nothing_is_interrupted(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    _publish(store, "another-job")  # someone else's version of the same model does not count
    outcome = reconcile(db, store)
    assert outcome.interrupted == [job] and outcome.published == []
    assert (db.get(job).state, db.get(job).error, db.get(job).version) == (FAILED, INTERRUPTED, 0)


def test_a_succeeded_job_whose_version_vanished_fails_with_the_reason(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    version = _publish(store, job)
    db.succeed(job, version, {}, True)
    import shutil

    shutil.rmtree(store.get("vit", version).path)  # lost: a restore from an older copy, or rm by hand
    assert contradictions(db, store) == [f"job {job} says SUCCEEDED version 1, which is not in the store"]
    outcome = reconcile(db, store)
    record = db.get(job)
    assert outcome.lost == [job] and record.state == FAILED
    assert record.error.startswith("lost: version 1 of 'vit' is not in the store")
    assert contradictions(db, store) == []


def test_a_reused_version_number_is_not_taken_for_the_job_s_own(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    first = _running(db)
    db.succeed(first, _publish(store, first), {}, True)
    import shutil

    shutil.rmtree(store.get("vit", 1).path)
    second = _running(db, {**SPEC, "max_drop": 0.1})
    db.succeed(second, _publish(store, second), {}, True)  # takes version number 1 again
    outcome = reconcile(db, store)
    assert outcome.lost == [first] and "now holds another job's model" in db.get(first).error
    assert db.get(second).state == SUCCEEDED


def test_a_version_deleted_on_purpose_leaves_its_job_succeeded(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    db.succeed(job, _publish(store, job), {}, True)
    _publish(store, None)  # version 2 keeps the model listed
    store.delete("vit", 1)
    outcome = reconcile(db, store)
    record = db.get(job)
    assert outcome.deleted == [job] and outcome.lost == []
    assert record.state == SUCCEEDED and "deleted from the store since" in record.message
    assert contradictions(db, store) == []


def test_versions_published_before_manifests_named_jobs_are_left_alone(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    db.succeed(job, _publish(store, None), {}, True)
    assert reconcile(db, store).lost == [] and db.get(job).state == SUCCEEDED


def test_retrying_a_recovered_job_returns_it_once_instead_of_a_duplicate(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    _publish(store, job)
    reconcile(db, store)
    retry = db.create("vit", json.loads(json.dumps(SPEC)))
    assert (retry.id, retry.state, retry.version) == (job, SUCCEEDED, 1)
    assert db.count(QUEUED) == 0 and [v.version for v in store.versions("vit")] == [1]
    again = db.create("vit", SPEC)  # the client has its answer now: another submit is a new job
    assert again.id != job and again.state == QUEUED
    other = db.create("vit", {**SPEC, "max_drop": 0.2})
    assert other.id not in (job, again.id)


def test_a_job_that_finished_normally_is_not_a_retry_target(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    db.succeed(job, _publish(store, job), {}, True)
    assert db.create("vit", SPEC).id != job


def test_a_job_publishes_at_most_one_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert _publish(store, "job-1") == 1
    assert _publish(store, "job-1") == 1
    assert _publish(store, "job-2") == 2
    assert [v.job for v in store.versions("vit")] == ["job-1", "job-2"]
    assert not any((tmp_path / STAGING).iterdir())


def test_contradictions_are_found(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), JobDB(tmp_path / ".jobs.sqlite")
    job = _running(db)
    _publish(store, job)
    _publish(store, "ghost-job")
    found = contradictions(db, store)
    assert f"job {job} is RUNNING with no worker" in found
    assert f"vit version 1 was published by job {job}, which says RUNNING version 0" in found
    assert "vit version 2 names job ghost-job, which is not in the database" in found


def test_an_older_database_gains_the_recovered_column(tmp_path: Path) -> None:
    path = tmp_path / ".jobs.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, target_name TEXT NOT NULL, "
                       "spec_json TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', "
                       "stage TEXT NOT NULL DEFAULT '', fraction REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', "
                       "metrics_json TEXT NOT NULL DEFAULT '{}', result_json TEXT NOT NULL DEFAULT '', "
                       "budget_met INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0, "
                       "created REAL NOT NULL, updated REAL NOT NULL)")
    connection.execute("INSERT INTO jobs (id, state, target_name, spec_json, created, updated) VALUES (?,?,?,?,?,?)",
                       ("old", RUNNING, "vit", json.dumps(SPEC), time.time(), time.time()))
    connection.commit()
    connection.close()
    db = JobDB(path)
    assert reconcile(db, ModelStore(tmp_path)).interrupted == ["old"]


def test_staging_of_a_zombie_or_a_reused_pid_is_swept(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    deadline = time.time() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.time() < deadline:
        time.sleep(0.01)
    zombie = tmp_path / STAGING / f"{pid}-t1-{'a' * 32}"  # a killed worker nobody reaped yet
    reused = tmp_path / STAGING / f"{os.getpid()}-t1-{'b' * 32}"  # our pid, but another start time
    mine = store.staging_dir()
    for leftover in (zombie, reused):
        leftover.mkdir(parents=True)
        (leftover / "calibration.npy").write_bytes(b"\0" * 1024)
    try:
        assert store.sweep_staging() == 2
        assert not zombie.exists() and not reused.exists() and mine.is_dir()
    finally:
        os.waitpid(pid, 0)

"""A job's state never contradicts the store, hostile data fails its job clearly, and start-up
says what it cleaned and what is exposed. Real servers, real workers, kill -9 at the exact instant
after a version is renamed into place (tests/integration/crash_points.py: the worker's own locks)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from edgeq.jobs.db import JobDB
from edgeq.jobs.recovery import contradictions
from edgeq.store import ModelStore
from edgeq.store.repository import STAGING
from edgeq_server.client import EdgeqClient
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from tests.integration.crash_points import kill_workers, paused_after_publish, worker_pids
from tests.integration.server_process import ServerProcess, copy_store

NAME = "truthful"


def _spec(calibration: str) -> pb.JobSpec:
    return pb.JobSpec(target_name=NAME, model=pb.ModelSource(timm="edgeq_vit_fmnist"), calibration_artifact=calibration,
                      metric="agreement", max_drop=0.5, speed_seconds=0)


def _state(job: pb.Job) -> str:
    return pb.JobState.Name(job.state)


def _agree(store: Path) -> None:
    kept = ModelStore(store)
    assert kept.validate() == []
    assert contradictions(JobDB(store / ".jobs.sqlite"), kept) == []


def test_kill_9_of_the_server_right_after_publishing(fmnist_result, fmnist_npz, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = copy_store(fmnist_result.path.parent.parent, tmp_path / "store")
    server = ServerProcess(store).start()
    with EdgeqClient(server.target) as client:
        spec = _spec(client.upload(fmnist_npz["calibration"]).sha256)
        job = client.submit(spec)
        with paused_after_publish(store, store / ".jobs.sqlite", NAME, job.id) as published:
            assert published.version == 1 and published.job == job.id
            staged = list((store / STAGING).iterdir())
            server.kill()  # the worker dies with it, before it records success
    assert staged, "the worker's staging dir existed at the kill"
    restarted = ServerProcess(store).start()
    try:
        assert not any((store / STAGING).iterdir()), "start-up removes the killed worker's staging dirs"
        with EdgeqClient(restarted.target) as client:
            record = client.quantization.Get(pb.JobRef(id=job.id))
            assert (_state(record), record.version, record.error) == ("SUCCEEDED", 1, "")
            result = json.loads(record.result_json)
            assert result["accuracy"] == ModelStore(store).get(NAME, 1).report()["accuracy"]
            assert result["summary"][0].startswith("model truthful from timm:edgeq_vit_fmnist")
            retry = client.submit(spec)  # the client never heard the outcome: its retry gets the job back
            assert (retry.id, _state(retry), retry.version) == (job.id, "SUCCEEDED", 1)
            assert [v.version for v in ModelStore(store).versions(NAME)] == [1]
    finally:
        assert restarted.stop() == 0
    assert "was running when the server stopped, after it published: marked succeeded" in restarted.log.read_text()
    _agree(store)


def test_kill_9_of_the_worker_right_after_publishing(fmnist_result, fmnist_npz, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = copy_store(fmnist_result.path.parent.parent, tmp_path / "store")
    server = ServerProcess(store).start()
    try:
        assert server.process is not None
        with EdgeqClient(server.target) as client:
            job = client.submit(_spec(client.upload(fmnist_npz["calibration"]).sha256))
            with paused_after_publish(store, store / ".jobs.sqlite", NAME, job.id):
                assert kill_workers(server.process.pid)
            final = client.watch(job.id)
            assert (_state(final), final.version, final.error) == ("SUCCEEDED", 1, "")
            assert json.loads(final.result_json)["accuracy"]["metric"] == "agreement"
            assert not any((store / STAGING).iterdir()), "the runner removes its dead worker's staging dirs"
    finally:
        assert server.stop() == 0
    assert "its worker died after publishing version 1; marked succeeded" in server.log.read_text()
    _agree(store)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return stream.getvalue()


def _hostile_files(folder: Path) -> dict[str, Path]:
    row = 28 * 28 * 4
    liar = folder / "liar.npz"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inputs.npy", _npy_header((30_000_000, 1, 28, 28)) + b"\0" * (row * 4))
    bomb = folder / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("inputs.npy", "w") as member:
            member.write(_npy_header((200_000, 1, 28, 28)))
            for _ in range(200):
                member.write(b"\0" * (row * 1000))
    return {"liar": liar, "bomb": bomb}


def _peak_rss_of_workers(server_pid: int, stop: threading.Event, peaks: dict[int, int]) -> None:
    """Sample each worker's VmHWM (its peak RSS so far) until stopped."""
    while not stop.is_set():
        for pid in worker_pids(server_pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]) * 1024)
        time.sleep(0.05)


def test_hostile_data_fails_the_job_clearly_naming_the_uploaded_file(fmnist_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = copy_store(fmnist_result.path.parent.parent, tmp_path / "store")
    files = _hostile_files(tmp_path)
    server = ServerProcess(store).start()
    stop, peaks = threading.Event(), {}  # type: ignore[var-annotated]
    try:
        assert server.process is not None
        sampler = threading.Thread(target=_peak_rss_of_workers, args=(server.process.pid, stop, peaks))
        sampler.start()
        with EdgeqClient(server.target) as client:
            outcomes = {}
            for kind, path in files.items():
                artifact = client.upload(path)
                outcomes[kind] = (artifact.sha256, client.watch(client.submit(_spec(artifact.sha256)).id))
    finally:
        stop.set()
        assert server.stop() == 0
    sha, liar = outcomes["liar"]
    assert _state(liar) == "FAILED"
    assert liar.error.startswith(f"InvalidArgument: 'liar.npz' (sha256 {sha[:12]}…): 'inputs' declares shape "
                                 "[30000000, 1, 28, 28]"), liar.error
    sha, bomb = outcomes["bomb"]
    assert _state(bomb) == "FAILED"
    assert bomb.error.startswith(f"ResourceExhausted: 'bomb.npz' (sha256 {sha[:12]}…): entry 'inputs.npy' expands "), bomb.error
    assert len(peaks) == 2 and max(peaks.values()) < 1.5 * 2**30, peaks  # a worker importing the model, nothing more
    assert "job workers run with a memory limit of" in server.log.read_text()


def test_start_up_warns_about_tokens_without_tls_and_insecure(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"manage {'m' * 24}\n")
    for extra, expected in ((("--token-file", str(tokens)), f"WARNING edgeq.server: bearer tokens from {tokens} travel "
                             "in clear text"),
                            (("--insecure",), "WARNING edgeq.server: --insecure: 127.0.0.1:0 accepts every caller "
                             "without TLS or tokens")):
        store = tmp_path / f"store{len(extra)}"
        server = ServerProcess(store, *extra).start()
        assert server.stop() == 0
        assert expected in server.log.read_text()
    quiet = ServerProcess(tmp_path / "quiet").start()
    assert quiet.stop() == 0
    assert "WARNING" not in quiet.log.read_text()


def test_a_worker_past_its_memory_limit_fails_its_job_naming_the_limit(fmnist_npz, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Whether the failed allocation is Python's (MemoryError: ResourceExhausted) or native code's (the
    worker dies of a signal) depends on which import hits the limit first; either way the job fails and
    says the worker ran under its memory limit."""
    from edgeq.artifacts import ArtifactStore
    from edgeq.jobs.runner import JobRunner
    from edgeq.jobs.spec import JobSpec
    from edgeq.options import QuantizeOptions

    artifacts = ArtifactStore(tmp_path)
    writer = artifacts.writer("calibration.npz")
    writer.write(fmnist_npz["calibration"].read_bytes())
    calibration = writer.finish()
    db = JobDB(tmp_path / ".jobs.sqlite")
    spec = JobSpec(target_name=NAME, timm="edgeq_vit_fmnist", calibration_artifact=calibration.sha256,
                   options=QuantizeOptions(max_drop=0.5, speed_seconds=0))
    job = db.create(NAME, spec.to_dict())
    runner = JobRunner(tmp_path, tmp_path, db, memory_limit=300 * 2**20)  # less than torch and OpenVINO need to load
    runner.start()
    try:
        deadline = time.monotonic() + 300
        while not db.get(job.id).finished and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runner.stop()
    record = db.get(job.id)
    assert record.state == "FAILED"
    assert (record.error.startswith("ResourceExhausted: the job ran out of memory during import (its worker is "
                                    "limited to 0.3 GiB): ")
            or record.error.startswith("the worker process crashed (signal SIG")
            and "it runs under a memory limit of 0.3 GiB" in record.error), record.error
    assert not any((tmp_path / STAGING).iterdir())

"""edgeq never phones home: a whole quantization job makes no DNS look-up and no connection, in
the caller and in every process it spawns (the job worker, the NNCF step children), and none of
them loads OpenVINO's telemetry package.

Every Python process of the run loads `sitecustomize` from a folder on PYTHONPATH (spawned
children inherit the environment), which installs an audit hook before any other code runs and
appends what it sees to one log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

AUDIT = r'''
import json, os, sys

NETWORK = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
           "socket.connect", "socket.sendto", "socket.sendmsg"}


def _record(kind, detail):
    with open(os.environ["EDGEQ_AUDIT_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"pid": os.getpid(), "kind": kind, "detail": detail}) + "\n")


def _hook(event, args):
    if event in NETWORK:
        _record("network", [event, repr(args)[:200]])
    elif event == "import" and str(args[0]).split(".")[0] == "openvino_telemetry" \
            and sys.modules.get(args[0], "absent") is not None:  # None: the import is refused
        _record("telemetry", str(args[0]))


_record("started", " ".join(sys.argv))
sys.addaudithook(_hook)
'''

SCRIPT = r"""
import sys, time
from pathlib import Path

import edgeq
from edgeq.artifacts import ArtifactStore
from edgeq.jobs.db import JobDB
from edgeq.jobs.runner import JobRunner
from edgeq.jobs.spec import JobSpec
from edgeq.options import QuantizeOptions


def through_the_worker(calibration: Path, root: Path) -> str:
    artifacts = ArtifactStore(root / "state")
    writer = artifacts.writer("calibration.npz")
    writer.write(calibration.read_bytes())
    spec = JobSpec(target_name="quiet-job", timm="edgeq_vit_fmnist", calibration_artifact=writer.finish().sha256,
                   options=QuantizeOptions(max_drop=0.5, no_fallback=True, speed_seconds=0.0))
    db = JobDB(root / "state" / "jobs.sqlite")
    job = db.create(spec.target_name, spec.to_dict())
    runner = JobRunner(root / "store", root / "state", db)
    runner.start()
    runner.wake()
    deadline = time.monotonic() + 600
    while not db.get(job.id).finished and time.monotonic() < deadline:
        time.sleep(0.5)
    runner.stop()
    record = db.get(job.id)
    return f"{record.state} {record.error or ''}"


if __name__ == "__main__":
    calibration, root = Path(sys.argv[1]), Path(sys.argv[2])
    # Only edgeq's entry point, nothing that loads OpenVINO first: a program that imports OpenVINO
    # before calling edgeq keeps OpenVINO's telemetry as that program configured it.
    edgeq.quantize("timm:edgeq_vit_fmnist", calibration=str(calibration), store=str(root / "store"), name="quiet",
                   no_fallback=True, speed_seconds=0, sensitivity_samples=1)
    print("job:", through_the_worker(calibration, root))
"""


def test_quantization_makes_no_network_calls_in_any_process(fmnist_npz: dict[str, Path], tmp_path: Path) -> None:
    site = tmp_path / "audit"
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT)
    script = tmp_path / "quiet.py"
    script.write_text(SCRIPT)
    log = tmp_path / "audit.jsonl"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(site), "EDGEQ_AUDIT_LOG": str(log)}
    run = subprocess.run([sys.executable, str(script), str(fmnist_npz["calibration"]), str(tmp_path / "run")],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2], timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "job: SUCCEEDED" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]

    records = [json.loads(line) for line in log.read_text().splitlines()]
    started = {r["pid"]: r["detail"] for r in records if r["kind"] == "started"}
    spawned = [pid for pid, argv in started.items() if "multiprocessing-fork" in argv]
    # The caller, NNCF's child for its own PTQ, the job worker and the worker's PTQ child at least.
    assert len(spawned) >= 3, started
    assert [r for r in records if r["kind"] == "telemetry"] == [], "openvino_telemetry was loaded"
    outside = [r for r in records if r["kind"] == "network" and "127.0.0.1" not in r["detail"][1]
               and "localhost" not in r["detail"][1]]
    assert outside == [], outside

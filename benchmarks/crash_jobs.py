"""kill -9 at random instants of quantization jobs; after each, the store must validate and no job's
state may contradict it. A script, not a CI test (tests/integration/test_job_truth.py is the CI version).

    python benchmarks/crash_jobs.py --rounds 20 --json docs/results/reliability/crash_jobs_vnni.json

Each round starts `edgeq serve` on one store (kept across rounds, so versions accumulate), submits
the Fashion-MNIST ViT job, and kills either the server (its worker dies with it) or only the
worker, at one of two kinds of instant:

- random: a uniform delay between 0 and 1.1x a job's measured duration after Submit (queued, import,
  calibration, PTQ, analysis, report, publish or done);
- after-publish: the exact instant after the version is renamed into place and before the job
  records success (held there with the worker's own locks: tests/integration/crash_points.py).

Then it restarts the server if it was killed, lets a job that never started run, resubmits the same
spec after an after-publish kill (it must get the same job back, not a new version), stops the server
and checks: `ModelStore.validate()` is empty, `edgeq.jobs.recovery.contradictions()` is empty, and no
staging directory is left.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeq.jobs.db import JobDB  # noqa: E402
from edgeq.jobs.recovery import contradictions  # noqa: E402
from edgeq.store import ModelStore  # noqa: E402
from edgeq.store.repository import STAGING  # noqa: E402
from edgeq_server.client import EdgeqClient  # noqa: E402
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb  # noqa: E402
from tests.integration.crash_points import kill_workers, paused_after_publish  # noqa: E402
from tests.integration.server_process import ServerProcess  # noqa: E402

NAME = "crashy"


def _cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"))


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" (uncommitted changes)" if git("status", "--porcelain", "--", "edgeq", "server") else "")


def _calibration(folder: Path, rows: int) -> Path:
    from tests.conftest import fmnist_arrays

    inputs, labels = fmnist_arrays()
    path = folder / "calibration.npz"
    np.savez(path, inputs=inputs[:rows], labels=labels[:rows])
    return path


QUICK = {"calibration_rows": 64, "sensitivity_samples": 2}  # --quick: a shorter job, the same stages


def _spec(calibration: str, quick: bool = False) -> pb.JobSpec:
    spec = pb.JobSpec(target_name=NAME, model=pb.ModelSource(timm="edgeq_vit_fmnist"), calibration_artifact=calibration,
                      metric="agreement", max_drop=0.5, speed_seconds=0)
    if quick:
        spec.recipe.subset_size = QUICK["calibration_rows"]
        spec.sensitivity_samples = QUICK["sensitivity_samples"]
    return spec


def _state(job: pb.Job) -> str:
    return pb.JobState.Name(job.state)


def _measure_job(store: Path, calibration: Path, quick: bool) -> float:
    """Seconds from Submit to the end of one uninterrupted job (the scale for random instants)."""
    server = ServerProcess(store).start()
    try:
        with EdgeqClient(server.target) as client:
            started = time.monotonic()
            final = client.watch(client.submit(_spec(client.upload(calibration).sha256, quick)).id)
            assert _state(final) == "SUCCEEDED", final.error
            return time.monotonic() - started
    finally:
        server.stop()


def one_round(store: Path, calibration: Path, rng: random.Random, job_seconds: float,
              after_publish_share: float, quick: bool = False) -> dict[str, Any]:
    target = rng.choice(("server", "worker"))
    instant = "after-publish" if rng.random() < after_publish_share else "random"
    row: dict[str, Any] = {"target": target, "instant": instant}
    started = time.monotonic()
    server = ServerProcess(store).start()
    assert server.process is not None
    with EdgeqClient(server.target) as client:
        spec = _spec(client.upload(calibration).sha256, quick)
        job = client.submit(spec)
        row["job"] = job.id
        if instant == "after-publish":
            with paused_after_publish(store, store / ".jobs.sqlite", NAME, job.id) as published:
                row["published_version"] = published.version
                if target == "server":
                    server.kill()
                else:
                    row["killed_workers"] = len(kill_workers(server.process.pid))
        else:
            row["delay_s"] = round(rng.uniform(0, 1.1 * job_seconds), 2)
            time.sleep(row["delay_s"])
            if target == "server":
                server.kill()
            else:
                row["killed_workers"] = len(kill_workers(server.process.pid))  # 0: not started yet, or done
    if target == "server":
        server = ServerProcess(store).start()
    with EdgeqClient(server.target) as client:
        final = client.watch(job.id)  # a job that never started runs now; a killed one is settled
        row["state"], row["version"], row["error"] = _state(final), final.version, final.error[:160]
        if instant == "after-publish" and target == "server":
            before = len(ModelStore(store).versions(NAME))
            retry = client.submit(spec)
            row["retry_same_job"] = retry.id == job.id
            if retry.id != job.id:  # a duplicate would run now: let it, and count what it made
                client.watch(retry.id)
            row["retry_new_versions"] = len(ModelStore(store).versions(NAME)) - before
    row["server_exit"] = server.stop()
    kept = ModelStore(store)
    row["store_problems"] = kept.validate()
    row["contradictions"] = contradictions(JobDB(store / ".jobs.sqlite"), kept)
    row["staging_left"] = sorted(p.name for p in (store / STAGING).iterdir()) if (store / STAGING).is_dir() else []
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--after-publish-share", type=float, default=0.3,
                        help="share of rounds killed at the instant after publishing (the rest: random instants)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help=f"a shorter job ({QUICK['calibration_rows']} calibration rows, "
                             f"{QUICK['sensitivity_samples']} SQNR samples): the same stages, more rounds per hour")
    parser.add_argument("--job-seconds", type=float,
                        help="the scale for random instants (default: measured with one uninterrupted job first)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    commit = _commit()  # at the start: every server this run starts imports the code as it is now
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "store"
        calibration = _calibration(Path(scratch), QUICK["calibration_rows"] if args.quick else 200)
        job_seconds = args.job_seconds or _measure_job(store, calibration, args.quick)
        print(f"one uninterrupted job: {job_seconds:.1f} s", flush=True)
        for index in range(args.rounds):
            row = one_round(store, calibration, rng, job_seconds, args.after_publish_share, args.quick)
            rows.append(row)
            ok = not (row["store_problems"] or row["contradictions"] or row["staging_left"]) and row["server_exit"] == 0
            print(f"round {index + 1:>3}: kill -9 {row['target']:<6} {row['instant']:<13} "
                  f"{row.get('delay_s', ''):>6} -> {row['state']:<9} v{row['version']:<3} "
                  f"{'ok' if ok else 'PROBLEM ' + json.dumps(row)}", flush=True)
    agreed = sum(1 for r in rows if not r["store_problems"] and not r["contradictions"])
    retries = [r for r in rows if "retry_same_job" in r]
    summary = {
        "rounds": len(rows), "store_valid_and_jobs_agree": agreed,
        "staging_left_rounds": sum(1 for r in rows if r["staging_left"]),
        "server_exit_nonzero": sum(1 for r in rows if r["server_exit"] != 0),
        "after_publish_rounds": sum(1 for r in rows if r["instant"] == "after-publish"),
        "after_publish_succeeded": sum(1 for r in rows if r["instant"] == "after-publish" and r["state"] == "SUCCEEDED"),
        "retries": len(retries), "retries_same_job": sum(1 for r in retries if r["retry_same_job"]),
        "retry_duplicates": sum(r["retry_new_versions"] for r in retries),
        "outcomes": {s: sum(1 for r in rows if r["state"] == s) for s in sorted({r["state"] for r in rows})},
        "job_seconds": round(job_seconds, 1),
    }
    result = {"summary": summary, "commit": commit, "date": dt.date.today().isoformat(), "cpu_flags": _cpu_flags(),
              "command": " ".join(["python", "benchmarks/crash_jobs.py", *sys.argv[1:]]), "rounds": rows}
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if agreed != len(rows):
        sys.exit(1)


if __name__ == "__main__":
    main()

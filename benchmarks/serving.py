"""`edgeq serve` against OpenVINO's own benchmark_app on the same IR, measured with Triton's perf_analyzer.

    python benchmarks/serving.py --store STORE --models vit-fmnist,deit-s,vits14 \
        --json docs/results/serving/serve_vs_runtime.json

perf_analyzer (C++, so the client costs the two cores little) drives the server over gRPC at each
concurrency; benchmark_app runs the same IR in-process with the THROUGHPUT hint (the throughput
reference) and the LATENCY hint (the one-request reference). Rounds alternate: for each round and
model, benchmark_app then each server variant at each concurrency, so slow drifts of a noisy
machine hit all columns alike. Medians over rounds are reported, with ratios.

`--variant NAME=PYTHON [serve flags...]` compares server builds or settings in the same run (each
variant is its own `edgeq serve` process; only one is under load at a time), e.g.
`--variant "before=/path/to/old/.venv/bin/python" --variant "after=.venv/bin/python --batch-delay-us 0"`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
PERF = VENV_BIN.parent / "opt" / "perf_analyzer"
PA_LATENCY_PARTS = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                    "Server Compute Infer", "Server Compute Output", "Client Recv")
LISTENING = re.compile(r"edgeq listening on \S+:(\d+)")


def cpu_flags() -> list[str]:
    wanted = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return sorted(wanted & set(line.split(":", 1)[1].split()))
    return []


def commit() -> str:
    run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return run.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def benchmark_app(xml: Path, shape: list[int], hint: str, seconds: int, static: bool = True) -> dict[str, float]:
    """benchmark_app on `xml`; `static`: reshape the batch to `shape` first (as a deployment would),
    else keep the IR's dynamic batch and only feed `shape`."""
    tool = str(VENV_BIN / "benchmark_app")
    text = "[" + ",".join(map(str, shape)) + "]"
    run = subprocess.run([tool, "-m", str(xml), "-d", "CPU", "-hint", hint.lower(), "-t", str(seconds),
                          *(["-shape", text] if static else []), "-data_shape", text], capture_output=True, text=True)
    throughput = re.search(r"Throughput:\s+([\d.]+) FPS", run.stdout)
    median = re.search(r"Median:\s+([\d.]+) (ms|us)", run.stdout)
    average = re.search(r"Average:\s+([\d.]+) (ms|us)", run.stdout)
    if not (throughput and median and average):
        raise SystemExit(f"benchmark_app failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    in_ms = lambda match: float(match.group(1)) / (1000 if match.group(2) == "us" else 1)  # noqa: E731
    return {"fps": float(throughput.group(1)), "median_ms": in_ms(median), "average_ms": in_ms(average)}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each kind of thread in process `pid`: the main (event-loop) thread,
    gRPC's C-core threads, and the rest (OpenVINO's stream threads, which keep the name "python")."""
    seconds = {"main": 0.0, "grpc": 0.0, "openvino_and_other": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        kind = "main" if int(task.name) == pid else "openvino_and_other" if name == "python" else "grpc"
        seconds[kind] += used
    return seconds


def perf_analyzer(target: str, model: str, concurrency: int, requests: int, scratch: Path,
                  server_pid: int | None = None) -> dict[str, float]:
    """`requests` requests at a fixed concurrency; latencies and server-side times from its CSV.

    A fixed request count rather than perf_analyzer's stabilising windows: with batching, latency
    varies from window to window and the stability search can fail without measuring anything."""
    report = scratch / f"pa_{model}_{concurrency}.csv"
    env = {**os.environ, "LD_LIBRARY_PATH": str(PERF / "lib")}
    command = [str(PERF / "bin" / "perf_analyzer"), "-m", model, "-u", target, "-i", "grpc", "--input-data", "zero",
               "--concurrency-range", f"{concurrency}:{concurrency}", "--request-count", str(requests),
               "-f", str(report)]
    before = thread_cpu(server_pid) if server_pid else {}
    client_before = os.times()
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    wall = time.monotonic() - started
    client = os.times()
    # Share of one core each part of the server (and perf_analyzer itself) used during the run.
    cores_used = {f"{kind}_core_share": (used - before[kind]) / wall
                  for kind, used in (thread_cpu(server_pid) if server_pid else {}).items()}
    cores_used["perf_analyzer_core_share"] = (client.children_user + client.children_system
                                              - client_before.children_user - client_before.children_system) / wall
    if run.returncode != 0 or not report.exists():
        raise SystemExit(f"perf_analyzer failed:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    with report.open() as handle:
        row = next(csv.DictReader(handle))
    if any(key not in row for key in PA_LATENCY_PARTS):
        raise SystemExit(f"perf_analyzer's CSV lacks {PA_LATENCY_PARTS}: {sorted(row)}")
    errors = re.search(r"Failed request count:\s*(\d+)", run.stdout)
    us = lambda key: float(row.get(key, 0) or 0)  # noqa: E731 - perf_analyzer's CSV reports microseconds
    # Closed loop: throughput = concurrency / mean latency (Little's law). perf_analyzer's own
    # "Inferences/Second" counts whole measurement windows and is coarse with a fixed request count.
    mean_us = sum(float(row[key]) for key in PA_LATENCY_PARTS)  # perf_analyzer splits the mean latency into these
    return {"fps": concurrency / (mean_us / 1e6), "p50_ms": us("p50 latency") / 1000,
            "p99_ms": us("p99 latency") / 1000, "server_queue_ms": us("Server Queue") / 1000,
            "server_compute_ms": (us("Server Compute Input") + us("Server Compute Infer")
                                  + us("Server Compute Output")) / 1000,
            "errors": int(errors.group(1)) if errors else 0, **cores_used}


@dataclass
class Variant:
    name: str
    python: str
    flags: list[str]
    process: subprocess.Popen[str] | None = None
    target: str = ""
    rows: dict[str, dict[int, list[dict[str, float]]]] = field(default_factory=dict)

    def start(self, store: Path) -> None:
        # `python -m` puts the working directory first on sys.path: run in the interpreter's own checkout.
        checkout = Path(self.python).parent.parent.parent
        cwd = checkout if (checkout / "edgeq").is_dir() else None
        command = [self.python, "-m", "edgeq.cli", "serve", "--store", str(store.resolve()), "--port", "0"]
        usage = subprocess.run([*command[:4], "--help"], capture_output=True, text=True, cwd=cwd).stdout
        if "--http-port" in usage:  # older builds (a "before" variant) have no HTTP door
            command += ["--http-port", "0"]
        self.process = subprocess.Popen([*command, *self.flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, cwd=cwd)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            match = LISTENING.search(line)
            if match:
                self.target = f"127.0.0.1:{match.group(1)}"
                return
        raise SystemExit(f"variant {self.name}: the server exited with {self.process.wait()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(60)


def parse_variant(text: str) -> Variant:
    name, _, command = text.partition("=")
    words = shlex.split(command) or [sys.executable]
    return Variant(name, words[0], words[1:])


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--models", required=True, help="comma-separated model names in the store")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--seconds", type=int, default=5, help="per measurement (benchmark_app, each concurrency)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=PYTHON [serve flags]; default: one variant 'edgeq' with this interpreter")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edgeq.store import ModelStore

    store = ModelStore(args.store)
    models = args.models.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    variants = [parse_variant(v) for v in args.variant] or [Variant("edgeq", sys.executable, [])]
    runtime: dict[str, dict[str, list[dict[str, float]]]] = {m: {"THROUGHPUT": [], "LATENCY": []} for m in models}
    shapes = {m: [1, *store.get(m).report()["model"]["input"]["shape"]] for m in models}
    try:
        for variant in variants:
            variant.start(args.store)
            variant.rows = {m: {c: [] for c in concurrencies} for m in models}
        with tempfile.TemporaryDirectory() as scratch:
            for round_number in range(args.rounds):
                for model in models:
                    xml = store.get(model).xml
                    for hint in ("THROUGHPUT", "LATENCY"):
                        runtime[model][hint].append(benchmark_app(xml, shapes[model], hint, args.seconds))
                    # As many requests as the runtime does in `seconds`: each window lasts about that long.
                    requests = max(50, int(runtime[model]["THROUGHPUT"][-1]["fps"] * args.seconds))
                    for variant in variants:
                        for c in concurrencies:
                            variant.rows[model][c].append(perf_analyzer(variant.target, model, c, requests,
                                                                        Path(scratch), variant.process.pid))
                print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for variant in variants:
            variant.stop()

    result: dict[str, Any] = {"command": " ".join(sys.argv), "commit": commit(), "cpu_flags": cpu_flags(),
                              "cores": os.cpu_count(), "rounds": args.rounds, "seconds": args.seconds, "models": {}}
    for model in models:
        through, latency = median_of(runtime[model]["THROUGHPUT"]), median_of(runtime[model]["LATENCY"])
        entry: dict[str, Any] = {"benchmark_app": {"throughput_hint": through, "latency_hint": latency},
                                 "variants": {}}
        print(f"\n{model}: benchmark_app THROUGHPUT {through['fps']:.1f}/s (average {through['average_ms']:.2f} ms "
              f"per inference), LATENCY median {latency['median_ms']:.2f} ms")
        print(f"{'variant':<10} {'c':>3} {'infer/s':>9} {'x b_app':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'p50-lat':>8} {'queue ms':>9} {'compute ms':>10} {'errors':>6}  cores: openvino main grpc client")
        for variant in variants:
            table = {}
            for c in concurrencies:
                row = median_of(variant.rows[model][c])
                row["errors"] = sum(r["errors"] for r in variant.rows[model][c])
                row["ratio_to_benchmark_app"] = row["fps"] / through["fps"]
                row["p50_minus_latency_hint_ms"] = row["p50_ms"] - latency["median_ms"]
                table[str(c)] = row
                print(f"{variant.name:<10} {c:>3} {row['fps']:>9.1f} {row['ratio_to_benchmark_app']:>8.2f} "
                      f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['p50_minus_latency_hint_ms']:>+8.2f} "
                      f"{row['server_queue_ms']:>9.2f} {row['server_compute_ms']:>10.2f} {int(row['errors']):>6}  "
                      f"{row.get('openvino_and_other_core_share', 0):>14.2f} {row.get('main_core_share', 0):>4.2f} "
                      f"{row.get('grpc_core_share', 0):>4.2f} {row['perf_analyzer_core_share']:>6.2f}")
            entry["variants"][variant.name] = {"python": variant.python, "flags": variant.flags, "by_concurrency": table}
        result["models"][model] = entry
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

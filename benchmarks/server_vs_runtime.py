"""edgeq's gRPC server against OpenVINO's own benchmark_app on the same IR and CPU.

    python benchmarks/server_vs_runtime.py --store demo-store --model vit-fmnist --json docs/results/serving/server_vs_runtime_vit_fmnist_CPU.json

Alternating rounds: benchmark_app (THROUGHPUT hint, batch 1) then `edgeq bench`'s load generator
through gRPC at each concurrency; the ratio of medians says what the server costs. Also p50
latency at concurrency 1 against in-process synchronous inference (LATENCY hint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgeq.compile import compile_cpu
from edgeq.store import ModelStore
from edgeq_server.launch import launch
from edgeq_server.loadgen import run_load


def benchmark_app(xml: Path, shape: str, seconds: int) -> float:
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    run = subprocess.run([tool, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-t", str(seconds),
                          "-shape", shape], capture_output=True, text=True)
    match = re.search(r"Throughput:\s+([\d.]+) FPS", run.stdout)
    if not match:
        raise SystemExit(f"benchmark_app failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return float(match.group(1))


def in_process_p50_ms(xml: Path, shape: list[int], seconds: float) -> float:
    request = compile_cpu(str(xml), hint="LATENCY").create_infer_request()
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        begin = time.perf_counter()
        request.infer({0: data})
        times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", default="4,16")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hint", default="THROUGHPUT", choices=["THROUGHPUT", "LATENCY"],
                        help="the server's OpenVINO performance hint")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    info = ModelStore(args.store).get(args.model)
    shape = [1, *info.report()["model"]["input"]["shape"]]
    shape_text = "[" + ",".join(map(str, shape)) + "]"
    launched = launch([sys.executable, "-m", "edgeq.cli", "serve", "--store", str(args.store), "--port", "0",
                       "--performance-hint", args.hint], stderr=subprocess.DEVNULL)
    server, target = launched.process, f"127.0.0.1:{launched.port}"
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    runtime: list[float] = []
    served: dict[int, list[float]] = {c: [] for c in concurrencies}
    try:
        for _ in range(args.rounds):
            runtime.append(benchmark_app(info.xml, shape_text, args.seconds))
            for concurrency in concurrencies:
                result = asyncio.run(run_load(target, args.model, concurrency=concurrency, duration=args.seconds))
                served[concurrency].append(result.throughput)
        grpc_p50 = asyncio.run(run_load(target, args.model, concurrency=1, duration=args.seconds)).p50_ms
    finally:
        server.terminate()
        server.wait(30)
    local_p50 = in_process_p50_ms(info.xml, shape, args.seconds)
    rows = {"benchmark_app_fps": statistics.median(runtime), "rounds": args.rounds, "seconds": args.seconds,
            "served_fps": {str(c): statistics.median(v) for c, v in served.items()},
            "grpc_p50_ms_c1": grpc_p50, "in_process_p50_ms": local_p50, "p50_overhead_ms": grpc_p50 - local_p50}
    rows["ratio"] = {c: v / rows["benchmark_app_fps"] for c, v in rows["served_fps"].items()}
    print(f"benchmark_app: {rows['benchmark_app_fps']:.1f} infer/s (median of {args.rounds})")
    for c in concurrencies:
        print(f"edgeq gRPC c={c:<3} {rows['served_fps'][str(c)]:8.1f} infer/s  = {rows['ratio'][str(c)]:.2f} x benchmark_app")
    print(f"p50 latency c=1: gRPC {grpc_p50:.2f} ms, in-process {local_p50:.2f} ms, overhead {rows['p50_overhead_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

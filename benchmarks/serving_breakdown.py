"""Where a served inference loses time, one layer at a time, on the same IR and CPU.

    python benchmarks/serving_breakdown.py --store STORE --models deit-s,fmnist \
        --json docs/results/serving/breakdown_CPU.json

1. benchmark_app on the IR with its batch made static (`-shape`) and left dynamic (`-data_shape`
   only), THROUGHPUT and LATENCY hints: what a dynamic batch dimension costs OpenVINO itself.
2. edgeq's runtime in this process, no gRPC: the registry and its batching engine driven by
   asyncio callers at concurrency 1, 2 and 4: what the engine's Python path costs.
Compare both with benchmarks/serving.py (the same through `edgeq serve` and perf_analyzer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import benchmark_app, commit, cpu_flags  # noqa: E402 - the sibling script's helpers

from edgeq.runtime.registry import ModelRegistry, RuntimeConfig  # noqa: E402
from edgeq.store import ModelStore  # noqa: E402


async def engine_rate(store: Path, model: str, hint: str, concurrency: int, seconds: float) -> dict[str, Any]:
    registry = ModelRegistry(ModelStore(store), RuntimeConfig(performance_hint=hint))
    await registry.refresh()
    target = registry.get(model)
    arrays = {target.inputs[0].name: np.zeros([1, *target.inputs[0].shape[1:]], np.float32)}
    done = 0

    async def caller(deadline: float) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await registry.infer(target, arrays)
            done += 1

    await asyncio.gather(*[caller(time.perf_counter() + 1.0) for _ in range(concurrency)])  # warm-up
    done = 0
    began = time.perf_counter()
    await asyncio.gather(*[caller(began + seconds) for _ in range(concurrency)])
    return {"infer_per_s": done / (time.perf_counter() - began),
            "rows_per_call": {str(k): v.count for k, v in sorted(target.stats.batches.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    store = ModelStore(args.store)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "commit": commit(), "cpu_flags": cpu_flags(),
                              "models": {}}
    for model in args.models.split(","):
        info = store.get(model)
        shape = [1, *info.report()["model"]["input"]["shape"]]
        rows: dict[str, Any] = {"benchmark_app": {}, "engine_in_process": {}}
        for hint in ("THROUGHPUT", "LATENCY"):
            for kind, static in (("static", True), ("dynamic", False)):
                rows["benchmark_app"][f"{hint}_{kind}"] = benchmark_app(info.xml, shape, hint, args.seconds, static)
            for concurrency in (1, 2, 4):
                rows["engine_in_process"][f"{hint}_c{concurrency}"] = asyncio.run(
                    engine_rate(args.store, model, hint, concurrency, args.seconds))
        result["models"][model] = rows
        print(f"\n{model}")
        for key, row in rows["benchmark_app"].items():
            print(f"  benchmark_app {key:<18} {row['fps']:9.1f}/s  median {row['median_ms']:.2f} ms")
        for key, row in rows["engine_in_process"].items():
            print(f"  engine, no gRPC {key:<16} {row['infer_per_s']:9.1f}/s  rows per call {row['rows_per_call']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

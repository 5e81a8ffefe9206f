"""Soak: inference at saturation for a long time, valid and invalid requests mixed; reports errors,
throughput over time and server RSS over time. A script, not a CI test.

    python benchmarks/soak.py --minutes 30 --json docs/results/reliability/soak_30min_vit_fmnist_CPU.json

Starts `edgeq serve` on a store holding the Fashion-MNIST ViT (quantized first if needed), on
127.0.0.1 only; every `--interval` seconds it records throughput and the server's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.launch import launch
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _requests() -> tuple[pb.ModelInferRequest, list[pb.ModelInferRequest]]:
    good = pb.ModelInferRequest(model_name="vit-fmnist")
    good.inputs.add(name="x", datatype="FP32", shape=[4, 1, 28, 28])
    good.raw_input_contents.append(np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32).tobytes())
    bad = []
    for shape, raw, model in (([4, 1, 28, 27], b"\0" * 4 * 756 * 4, "vit-fmnist"), ([1, 1, 28, 28], b"\0" * 10, "vit-fmnist"),
                              ([1, 1, 28, 28], b"\0" * 3136, "ghost")):
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="x", datatype="FP32", shape=shape)
        request.raw_input_contents.append(raw)
        bad.append(request)
    return good, bad


async def soak(target: str, pid: int, seconds: float, interval: float, concurrency: int, bad_every: int) -> dict:
    good, bad = _requests()
    counters = {"ok": 0, "valid_errors": 0, "invalid_answered": 0, "invalid_wrong_code": 0}
    errors: list[str] = []
    samples = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + seconds

        async def worker(index: int) -> None:
            sent = 0
            while time.monotonic() < deadline:
                sent += 1
                if sent % bad_every == 0:
                    try:
                        await stub.ModelInfer(bad[sent % len(bad)], timeout=30)
                        counters["invalid_wrong_code"] += 1
                    except grpc.aio.AioRpcError as error:
                        ok = error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
                        counters["invalid_answered" if ok else "invalid_wrong_code"] += 1
                    continue
                try:
                    await stub.ModelInfer(good, timeout=30)
                    counters["ok"] += 1
                except grpc.aio.AioRpcError as error:
                    counters["valid_errors"] += 1
                    errors.append(f"{error.code().name}: {error.details()}")

        async def sampler() -> None:
            last_ok, last_t = 0, time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(interval)
                now = time.monotonic()
                samples.append({"t": round(seconds - (deadline - now), 1), "throughput": (counters["ok"] - last_ok) * 4 / (now - last_t),
                                "rss_mb": round(_rss_mb(pid), 1)})
                print(f"t={samples[-1]['t']:>7.0f}s  {samples[-1]['throughput']:8.1f} img/s  RSS {samples[-1]['rss_mb']:7.1f} MB  "
                      f"valid errors {counters['valid_errors']}", flush=True)
                last_ok, last_t = counters["ok"], now

        await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    first = [s["rss_mb"] for s in samples[: max(1, len(samples) // 10)]]
    last = [s["rss_mb"] for s in samples[-max(1, len(samples) // 10):]]
    return {"seconds": seconds, "concurrency": concurrency, **counters, "first_errors": errors[:5], "samples": samples,
            "rss_start_mb": float(np.median(first)), "rss_end_mb": float(np.median(last)),
            "throughput_median": float(np.median([s["throughput"] for s in samples]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bad-every", type=int, default=10, help="every Nth request of a worker is invalid")
    parser.add_argument("--store", type=Path, help="a store holding vit-fmnist (default: make one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = args.store
        if store is None:
            from edgeq.cli.demo import run_demo

            store = Path(scratch) / "store"
            run_demo(store)
        launched = launch([sys.executable, "-m", "edgeq.cli", "serve", "--store", str(store), "--port", "0", "--http-port", "0"])
        server, port = launched.process, launched.port
        try:
            result = asyncio.run(soak(f"127.0.0.1:{port}", server.pid, args.minutes * 60, args.interval,
                                      args.concurrency, args.bad_every))
        finally:
            server.terminate()
            result_code = server.wait(60)
    result["server_exit_code"] = result_code
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

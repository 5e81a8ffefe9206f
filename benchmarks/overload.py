"""Overload and stops against a real `edgeq serve`: bounded memory under a burst, clean exits under SIGTERM.

A script, not a CI test (tests/integration/test_overload.py is the short CI version). The server
serves an INT8 DeiT-Tiny (224x224, random initialisation: the weights do not matter for memory or
time), built once with `edgeq.quantize` into `--store` (reused when it is already there). A batch of
64 images is 38.5 MB of FP32 input.

    # 200 concurrent batch-64 ModelInfer, with a small byte budget and with the default one
    flock -s /tmp/edgeq-cpu.lock python benchmarks/overload.py burst --budgets 512MiB,default \\
        --json docs/results/reliability/overload_burst_deit_tiny_CPU.json
    # 20 rounds of SIGTERM while 40 clients keep the server overloaded
    flock -s /tmp/edgeq-cpu.lock python benchmarks/overload.py stop --rounds 20 \\
        --json docs/results/reliability/overload_stop_deit_tiny_CPU.json

burst: per budget, one server; a few requests warm it up, then its idle RSS is read; then `--requests`
concurrent calls are fired at once (one pre-serialised message sent `--requests` times over
`--channels` connections); the server's RSS (VmRSS from /proc, every 20 ms) and the machine's
MemAvailable are sampled throughout and for `--settle` seconds after the last answer. Recorded:
whether the server died, every status code, peak RSS against idle + the configured bound, RSS
after settling against idle (the goal: within 20 %).

stop: per round, a fresh server; `--clients` clients send batch-64 requests back to back (far more
work than the server finishes within its grace period); after a random 2-6 s the server gets
SIGTERM. Every request's outcome and timing is recorded, and the time from the signal to the
server's exit, and the server's closing log line
("N inference requests in flight at the signal: A answered, R refused UNAVAILABLE, C cut off") is
compared with what the clients saw: requests answered OK after the signal must equal A, requests
refused with the grace-period message must equal R, C must be 0, and the exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from edgeq_server.gen.inference import grpc_service_pb2 as pb  # noqa: E402
from tests.integration.server_process import ServerProcess  # noqa: E402

MODEL = "deit-tiny"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
MiB = 1 << 20
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 256 * MiB), ("grpc.max_receive_message_length", 256 * MiB)]
STOPPED = re.compile(r"stopped: (\d+) inference requests in flight at the signal: (\d+) answered, (\d+) refused "
                     r"UNAVAILABLE, (\d+) cut off[^,]*(?:, (\d+) unaccounted)?")
GRACE_REFUSAL = "could not run within its grace period"
CUT_OFF = "was still running when its grace period ended"


# ------------------------------------------------------------------ facts about the run
def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                                           "amx_bf16"))


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    dirty = git("status", "--porcelain", "--", "edgeq", "server")
    return git("rev-parse", "--short", "HEAD") + (" (uncommitted changes)" if dirty else "")


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_bytes(text: str) -> int:
    """'512MiB', '2GiB', '1000000' -> bytes; 'default' -> 0 (the server's own default)."""
    if text == "default":
        return 0
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, scale in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * scale)
    return int(text)


class Sampler(threading.Thread):
    """The server's RSS and the machine's available memory every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02, kill_below: int = 3 << 30):
        super().__init__(daemon=True)
        self.pid, self.interval, self.kill_below = pid, interval, kill_below
        self.killed_for_memory = False
        self.samples: list[tuple[float, int, int]] = []  # (monotonic, server RSS, MemAvailable)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic(), rss_bytes(self.pid), mem_available()))
            if self.samples[-1][2] < self.kill_below and not self.killed_for_memory:
                # the machine is shared: a server that would exhaust it is stopped here, and the run says so
                self.killed_for_memory = True
                os.kill(self.pid, signal.SIGKILL)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def between(self, start: float, end: float) -> list[tuple[float, int, int]]:
        return [s for s in self.samples if start <= s[0] <= end]


# ------------------------------------------------------------------ the model and its requests
def build_store(store: Path) -> Path:
    """An INT8 DeiT-Tiny (random initialisation) published as `deit-tiny`, unless the store has it."""
    from edgeq.store import ModelStore

    if store.is_dir() and MODEL in ModelStore(store).names():
        return store
    import edgeq

    with tempfile.TemporaryDirectory() as scratch:
        inputs = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)
        np.savez(Path(scratch) / "calibration.npz", inputs=inputs)
        edgeq.quantize("timm:deit_tiny_patch16_224", calibration=str(Path(scratch) / "calibration.npz"),
                       store=str(store), name=MODEL, metric="cosine", max_drop=0.5, no_fallback=True,
                       speed_seconds=0, sensitivity_samples=1, force_promote=True)
    return store


def request_bytes(batch: int, seed: int = 0) -> bytes:
    rows = np.random.default_rng(seed).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(rows.tobytes())
    return request.SerializeToString()


def input_name(target: str) -> str:
    from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + 120
        while not stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{MODEL} never became ready")
            time.sleep(0.2)
        return str(stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL)).inputs[0].name)


def with_input_name(message: bytes, name: str) -> bytes:
    request = pb.ModelInferRequest.FromString(message)
    request.inputs[0].name = name
    return request.SerializeToString()


async def call(stub: Any, message: bytes) -> tuple[str, str, float, float]:
    """(code, details, start, end) of one ModelInfer sent as pre-serialised bytes."""
    started = time.monotonic()
    try:
        await stub(message)
        return "OK", "", started, time.monotonic()
    except grpc.aio.AioRpcError as error:
        return error.code().name, (error.details() or "")[:240], started, time.monotonic()


def raw_stubs(channels: list[grpc.aio.Channel]) -> list[Any]:
    # No serializer: the request is sent as the bytes given; the answer is kept as bytes, unparsed.
    return [channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None) for channel in channels]


# ------------------------------------------------------------------ burst
async def fire(target: str, message: bytes, count: int, channels: int) -> list[tuple[str, str, float, float]]:
    opened = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(channels)]
    try:
        stubs = raw_stubs(opened)
        return list(await asyncio.gather(*[call(stubs[i % channels], message) for i in range(count)]))
    finally:
        for channel in opened:
            await channel.close()


def burst(store: Path, budget: int, args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--max-inflight-bytes", str(budget)] if budget else []
    server = ServerProcess(store, *extra).start()
    assert server.process is not None
    pid = server.process.pid
    sampler = Sampler(pid)
    sampler.start()
    row: dict[str, Any] = {"max_inflight_bytes": budget or "default", "requests": args.requests, "batch": args.batch}
    try:
        message = with_input_name(request_bytes(args.batch), input_name(server.target))
        row["request_mb"] = round(len(message) / 1e6, 1)
        warm = [asyncio.run(fire(server.target, message, 1, 1))[0] for _ in range(3)]  # OpenVINO's batch-64 buffers
        row["warmup_codes"] = dict(Counter(code for code, *_ in warm))
        time.sleep(3)  # the server trims its heap when idle (every --refresh-seconds)
        idle_from = time.monotonic()
        time.sleep(2)
        idle = sampler.between(idle_from, time.monotonic())
        row["idle_rss_mb"] = round(float(np.median([s[1] for s in idle])) / 1e6, 1)
        began = time.monotonic()
        outcomes = asyncio.run(fire(server.target, message, args.requests, args.channels))
        ended = time.monotonic()
        row["burst_seconds"] = round(ended - began, 1)
        row["server_alive_after_burst"] = server.process.poll() is None
        during = sampler.between(began, ended + 0.5)
        row["peak_rss_mb"] = round(max(s[1] for s in during) / 1e6, 1)
        row["min_mem_available_mb"] = round(min(s[2] for s in during) / 1e6, 1)
        codes = Counter(code for code, *_ in outcomes)
        row["codes"] = dict(codes)
        row["refusal_messages"] = dict(Counter(re.sub(r"[\d.]+", "N", d) for c, d, *_ in outcomes if c != "OK"))
        row["latency_ok_s"] = _percentiles([e - s for c, _, s, e in outcomes if c == "OK"])
        row["others_s"] = [(c, round(s - began, 1), round(e - began, 1)) for c, _, s, e in outcomes
                           if c not in ("OK", "RESOURCE_EXHAUSTED")]  # when the unexpected ones were sent and ended
        time.sleep(args.settle)
        settled = sampler.samples[-50:]  # the last second of samples (a paused run has no recent window)
        row["settled_after_s"] = args.settle
        row["settled_rss_mb"] = round(float(np.median([s[1] for s in settled])) / 1e6, 1)
        after = asyncio.run(fire(server.target, message, 2, 1))
        row["after_codes"] = dict(Counter(code for code, *_ in after))
        row["after_messages"] = sorted({d for c, d, *_ in after if c != "OK"})
        row["rss_curve_mb"] = _curve(sampler, began, 0.5)
    finally:
        row["exit_code"] = server.stop(timeout=60)
        sampler.stop()
    limit = budget or _default_budget()
    row["bound_mb"] = round(limit / 1e6, 1)
    row["killed_for_machine_memory"] = sampler.killed_for_memory
    row["crashes"] = 0 if row.get("server_alive_after_burst") and row["exit_code"] == 0 else 1
    row["peak_over_idle_mb"] = round(row["peak_rss_mb"] - row["idle_rss_mb"], 1)
    row["peak_within_idle_plus_bound"] = row["peak_rss_mb"] <= row["idle_rss_mb"] + row["bound_mb"]
    row["refusals_all_resource_exhausted"] = set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
    row["settled_over_idle"] = round(row["settled_rss_mb"] / row["idle_rss_mb"] - 1, 3)
    row["settled_within_20_percent"] = row["crashes"] == 0 and row["settled_over_idle"] <= 0.2
    return row


def _default_budget() -> int:
    from edgeq.runtime.memory import default_inflight_bytes

    return default_inflight_bytes()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 90, 100)}


def _curve(sampler: Sampler, start: float, step: float) -> list[tuple[float, float]]:
    """RSS every `step` seconds from `start` (seconds since start, MB)."""
    points, next_at = [], start
    for when, rss, _ in sampler.samples:
        if when >= next_at:
            points.append((round(when - start, 1), round(rss / 1e6, 1)))
            next_at = when + step
    return points


# ------------------------------------------------------------------ stop under load
async def load_then_signal(server: ServerProcess, message: bytes, clients: int, delay: float, channels: int,
                           exited: list[float]) -> tuple[list[tuple[str, str, float, float]], float]:
    """Clients send back to back; SIGTERM after `delay`; `exited` gets the moment the server exited."""
    assert server.process is not None
    outcomes: list[tuple[str, str, float, float]] = []
    signalled = asyncio.Event()
    opened = [grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS) for _ in range(channels)]
    stubs = raw_stubs(opened)

    async def client(index: int) -> None:
        while True:
            outcome = await call(stubs[index % channels], message)
            outcomes.append(outcome)
            if signalled.is_set() and outcome[0] != "OK":
                return

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.sleep(delay)
    server.process.send_signal(signal.SIGTERM)
    signal_at = time.monotonic()
    process = server.process
    threading.Thread(target=lambda: (process.wait(), exited.append(time.monotonic())), daemon=True).start()
    signalled.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for channel in opened:
            await channel.close()
    return outcomes, signal_at


def stop_round(store: Path, message_template: bytes, rng: random.Random, args: argparse.Namespace) -> dict[str, Any]:
    log_start = 0
    server = ServerProcess(store, "--grace-seconds", str(args.grace))
    if server.log.exists():
        log_start = server.log.stat().st_size
    server.start()
    assert server.process is not None
    message = with_input_name(message_template, input_name(server.target))
    delay = round(rng.uniform(2, 6), 2)
    exited: list[float] = []
    outcomes, signal_at = asyncio.run(load_then_signal(server, message, args.clients, delay, args.channels, exited))
    try:
        exit_code = server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        exit_code = server.stop(signal.SIGKILL)
    time.sleep(0.1)  # the waiter thread records the exit
    stopped_at = exited[0] if exited else time.monotonic()
    log = server.log.read_text()[log_start:]
    before = [o for o in outcomes if o[3] <= signal_at]
    across = [o for o in outcomes if o[2] <= signal_at < o[3]]  # sent before the signal, answered after
    after = [o for o in outcomes if o[2] > signal_at]
    row: dict[str, Any] = {
        "signal_after_s": delay, "exit_code": exit_code, "stop_seconds": round(stopped_at - signal_at, 1),
        "codes": dict(Counter(o[0] for o in outcomes)),
        "before_signal": dict(Counter(o[0] for o in before)),
        "in_flight_at_signal": dict(Counter(o[0] for o in across)),
        "sent_after_signal": dict(Counter(o[0] for o in after)),
        "unavailable_messages": dict(Counter(_kind(d) for c, d, *_ in outcomes if c == "UNAVAILABLE")),
        "other_messages": sorted({f"{c}: {d}" for c, d, *_ in outcomes if c not in ("OK", "UNAVAILABLE")})[:5],
    }
    found = STOPPED.search(log)
    if found:
        inflight, answered, refused, cut, unaccounted = (int(g or 0) for g in found.groups())
        row["log"] = {"in_flight": inflight, "answered": answered, "refused_unavailable": refused, "cut_off": cut,
                      "unaccounted": unaccounted}
        ok_after_signal = sum(1 for o in across if o[0] == "OK")
        grace_refused = sum(1 for o in outcomes if o[0] == "UNAVAILABLE" and GRACE_REFUSAL in o[1])
        cut_seen = sum(1 for o in outcomes if o[0] == "UNAVAILABLE" and CUT_OFF in o[1])
        row["clients"] = {"in_flight": len(across), "answered_ok": ok_after_signal, "refused_grace": grace_refused,
                          "cut_off_unavailable": cut_seen}
        row["log_matches_clients"] = (ok_after_signal == answered and grace_refused == refused and cut_seen == cut
                                      and unaccounted == 0)
    else:
        row["log"] = None
        row["log_matches_clients"] = False
        row["log_tail"] = log[-2000:]
    row["only_ok_or_unavailable"] = set(row["codes"]) <= {"OK", "UNAVAILABLE"}
    if "Fatal Python error" in log or "Segmentation fault" in log:
        row["log_tail"] = log[-4000:]
    return row


def _kind(details: str) -> str:
    """UNAVAILABLE messages grouped: the server's own reasons, or the transport's."""
    for key in (GRACE_REFUSAL, CUT_OFF, "takes no new requests", "server is stopping", "failed to connect", "Connection refused",
                "Socket closed", "GOAWAY", "Broken pipe"):
        if key in details:
            return key
    return details[:80]


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("burst", "stop"))
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "edgeq-overload-deit-tiny",
                        help="store with the INT8 DeiT-Tiny (built there when missing)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4, help="client connections")
    parser.add_argument("--requests", type=int, default=200, help="burst: concurrent requests")
    parser.add_argument("--budgets", default="512MiB,default", help="burst: --max-inflight-bytes values, comma-separated")
    parser.add_argument("--settle", type=float, default=60.0, help="burst: seconds to wait before reading RSS again")
    parser.add_argument("--rounds", type=int, default=20, help="stop: SIGTERM rounds")
    parser.add_argument("--clients", type=int, default=40, help="stop: clients sending back to back")
    parser.add_argument("--grace", type=float, default=5.0, help="stop: the server's --grace-seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = commit()
    store = build_store(args.store)
    result: dict[str, Any] = {"mode": args.mode, "model": f"{MODEL} INT8 (timm deit_tiny_patch16_224, random init)",
                              "commit": started, "date": dt.date.today().isoformat(), "cpu_flags": cpu_flags(),
                              "cpus": os.cpu_count(), "machine_memory_mb": round(_machine_memory() / 1e6),
                              "command": " ".join(["python", "benchmarks/overload.py", *sys.argv[1:]])}
    if args.mode == "burst":
        rows = []
        for text in args.budgets.split(","):
            row = burst(store, parse_bytes(text.strip()), args)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "rss_curve_mb"}), flush=True)
        result["runs"] = rows
        ok = all(r["crashes"] == 0 and r["refusals_all_resource_exhausted"] and r["peak_within_idle_plus_bound"]
                 and r["settled_within_20_percent"] for r in rows)
    else:
        rng = random.Random(args.seed)
        template = request_bytes(args.batch)
        rows = []
        for index in range(args.rounds):
            row = stop_round(store, template, rng, args)
            rows.append(row)
            print(f"round {index + 1:>2}: exit {row['exit_code']}, {row['codes']}, log {row['log']}, "
                  f"matches {row['log_matches_clients']}", flush=True)
        result["rounds"] = rows
        result["summary"] = {
            "rounds": len(rows), "exit_0": sum(1 for r in rows if r["exit_code"] == 0),
            "exit_codes": dict(Counter(str(r["exit_code"]) for r in rows)),
            "only_ok_or_unavailable": sum(1 for r in rows if r["only_ok_or_unavailable"]),
            "log_matches_clients": sum(1 for r in rows if r["log_matches_clients"]),
            "requests": dict(sum((Counter(r["codes"]) for r in rows), Counter())),
        }
        print(json.dumps(result["summary"], indent=2))
        result["summary"]["stop_seconds"] = {"min": min(r["stop_seconds"] for r in rows),
                                             "max": max(r["stop_seconds"] for r in rows), "grace": args.grace}
        ok = result["summary"]["exit_0"] == len(rows) and result["summary"]["only_ok_or_unavailable"] == len(rows)
    result["goal_met"] = ok
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if ok else 1)


def _machine_memory() -> int:
    from edgeq.runtime.memory import machine_memory_bytes

    return machine_memory_bytes()


if __name__ == "__main__":
    main()

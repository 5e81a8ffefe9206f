"""CLI commands that run or talk to a server: serve, submit, jobs, bench, health, export.

The gRPC side (`edgeq_server`) is imported inside each command, so `edgeq quantize` never loads it.
Every command that talks to a server takes the connection flags of `edgeq.cli.connect` (TLS, mTLS,
token); its gRPC errors become one line and an exit code in `edgeq.cli.exits`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgeq.cli import exits
from edgeq.cli.connect import add_connection_flags, security_from_args
from edgeq.cli.flags import add_job_arguments, add_option_flags, options_from_flags
from edgeq.cli.help import add_command
from edgeq.errors import InvalidArgument
from edgeq.cli.progress import stage_progress


def cmd_serve(args: argparse.Namespace) -> int:
    from edgeq_server.app import serve_forever
    from edgeq_server.config import options_from_args

    serve_forever(**options_from_args(args))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from edgeq_server.client import EdgeqClient
    from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
    from edgeq_server.specs import options_to_proto

    options = options_from_flags(args)  # bad options fail here, before anything is uploaded
    with (EdgeqClient(args.target, security=security_from_args(args)) as client,
          tempfile.TemporaryDirectory(prefix="edgeq-submit-") as scratch):
        source = pb.ModelSource()
        if args.model.startswith("timm:"):
            source.timm = args.model[len("timm:"):]
        elif args.model.endswith(".onnx"):
            source.onnx_artifact = client.upload(args.model).sha256
        elif Path(args.model).is_dir():  # a Hugging Face folder travels as a .tar of its files
            from edgeq.sources.hf_source import pack_folder

            source.hf_artifact = client.upload(pack_folder(Path(args.model), Path(scratch))).sha256
        else:
            source.ir_artifact = client.upload(args.model).sha256
        if args.weights:
            source.weights_artifact = client.upload(args.weights).sha256
        spec = pb.JobSpec(target_name=args.name, model=source,
                          calibration_artifact=client.upload(args.calibration).sha256,
                          validation_artifact=client.upload(args.validation).sha256 if args.validation else "")
        options_to_proto(options, spec)
        job = client.submit(spec)
        print(f"job {job.id} queued")
        if args.no_watch:
            return 0
        with stage_progress("queued") as on_event:
            final = client.watch(job.id, on_event)
        state = pb.JobState.Name(final.state)
        print(f"job {final.id}: {state}" + (f", version {final.version}" if final.version else "")
              + (f": {final.error}" if final.error else ""))
        for line in json.loads(final.result_json).get("summary", []) if final.result_json else []:
            print(line)
        if state != "SUCCEEDED":
            return exits.FAILED
        return exits.OK if final.budget_met else exits.BUDGET_NOT_MET


def cmd_jobs(args: argparse.Namespace) -> int:
    from edgeq_server.client import EdgeqClient
    from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb

    with EdgeqClient(args.target, security=security_from_args(args)) as client:
        if args.action in ("cancel", "show") and not args.job:
            raise InvalidArgument(f"edgeq jobs {args.action} JOB: give the job id (`edgeq jobs list` shows them)")
        if args.action == "cancel":
            job = client.quantization.Cancel(pb.JobRef(id=args.job))
            print(f"{job.id} {pb.JobState.Name(job.state)} {job.message}")
            return 0
        if args.action == "show":
            job = client.quantization.Get(pb.JobRef(id=args.job))
            print(job)
            return 0
        jobs = client.quantization.List(pb.ListJobsRequest()).jobs
        for job in jobs:
            print(f"{job.id}  {pb.JobState.Name(job.state):<9}  {job.target_name}  {job.stage}  {job.error or job.message}")
        if not jobs:
            print(f"no jobs on {args.target} yet (edgeq submit starts one)", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgeq_server.client import EdgeqClient

    with EdgeqClient(args.target, security=security_from_args(args)) as client:
        path = client.export(args.model, args.version, args.out)
    print(f"bundle written to {path}")
    return 0


def _counts(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]: positive numbers of requests in flight."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive numbers, e.g. 1,4,16")
    return counts


def _bench_inputs(path: str) -> Any:
    """The 'inputs' array of an .npz, or one line saying what is wrong with the file."""
    import numpy as np

    from edgeq._boundary import user_input
    from edgeq.errors import NotFound

    if not Path(path).is_file():
        raise NotFound(f"--data {path}: no such file")
    with user_input(f"--data {path}: expected an .npz holding an 'inputs' array"), np.load(path) as data:
        return data["inputs"]


def cmd_bench(args: argparse.Namespace) -> int:
    """Table per concurrency (and per version with --compare-version); --json writes it."""
    import asyncio
    import dataclasses
    import statistics
    import time

    import numpy as np
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from edgeq_server.config import is_loopback
    from edgeq_server.loadgen import run_load

    host = args.target.rsplit(":", 1)[0].strip("[]")
    if not args.allow_remote and not is_loopback(host):
        print(f"edgeq bench: {host} is not a loopback address; pass --allow-remote to load another machine")
        return 2
    security = security_from_args(args)
    data = _bench_inputs(args.data) if args.data else None
    versions = [str(args.version or "")] + ([str(args.compare_version)] if args.compare_version else [])
    rows = []
    with Progress(transient=True, disable=not Console(stderr=True).is_terminal) as progress:
        for concurrency in args.concurrency:
            for round_index in range(args.rounds if args.compare_version else 1):
                for version in versions:
                    task = progress.add_task(f"c={concurrency} v={version or 'latest'} round {round_index + 1}",
                                             total=args.duration)
                    began = time.perf_counter()

                    def tick(_count: int, task: Any = task, began: float = began) -> None:
                        progress.update(task, completed=min(args.duration, time.perf_counter() - began))

                    result = asyncio.run(run_load(args.target, args.model, version=version, concurrency=concurrency,
                                                  duration=args.duration, max_requests=args.max_requests,
                                                  batch=args.batch, data=data, on_tick=tick, security=security))
                    progress.remove_task(task)
                    rows.append(result)
    table = Table(title=f"edgeq bench {args.model} @ {args.target} (batch {args.batch})")
    for column in ("version", "concurrency", "requests", "errors", "infer/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row.version, str(row.concurrency), str(row.requests), str(row.errors), f"{row.throughput:.1f}",
                      *(f"{ms:.2f}" for ms in (row.p50_ms, row.p90_ms, row.p99_ms, row.max_ms)))
    Console(width=140).print(table)
    summary: dict[str, Any] = {"rows": [dataclasses.asdict(row) for row in rows]}
    if args.compare_version:
        ratios = {}
        for concurrency in sorted({r.concurrency for r in rows}):
            def median(version: str) -> float:
                return statistics.median_high(r.throughput for r in rows
                                              if r.concurrency == concurrency and r.version == version)
            ratios[str(concurrency)] = median(versions[0] or "latest") / max(1e-9, median(versions[1]))
            print(f"concurrency {concurrency}: version {versions[0] or 'latest'} / version {versions[1]} "
                  f"throughput ratio x{ratios[str(concurrency)]:.2f} (median of {args.rounds} alternating rounds)")
        summary["ratios"] = ratios
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if any(r.errors for r in rows) else 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server reports SERVING (for Docker HEALTHCHECK and scripts)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with security_from_args(args).channel(args.target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=args.service),
                                                               timeout=args.timeout)
    except grpc.RpcError as error:
        failure = exits.describe(error, args.target)
        print(f"unhealthy: {failure.message if failure else error}")
        return exits.FAILED  # a probe: 0 healthy, 1 anything else (Docker HEALTHCHECK and Kubernetes read it so)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(status)
    return 0 if status == "SERVING" else 1


def add_commands(commands: Any) -> None:
    serve = add_command(commands, "serve", "run the gRPC server (KServe v2 inference + edgeq management)", [
        "edgeq serve --store ./models --port 8001 --metrics-port 9090",
        "edgeq serve --store ./models --create --port 0      # a new, empty store; 0 picks a free port",
        "edgeq serve --store models --host 0.0.0.0 --tls-cert server.pem --tls-key server.key --token-file tokens"])
    from edgeq_server.config import add_arguments  # imports no gRPC

    add_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    submit = add_command(commands, "submit", "upload a model and data to a server and quantize there", [
        "edgeq submit --model timm:edgeq_vit_fmnist --calibration calib.npz --name vit",
        "edgeq submit --target quantizer:8001 --ca ca.pem --token-file token --model model.onnx "
        "--calibration images.tar --name vit-s --no-watch"])
    add_job_arguments(submit)
    add_option_flags(submit)
    submit.add_argument("--no-watch", action="store_true", help="print the job id and return; do not follow it")
    add_connection_flags(submit)
    submit.set_defaults(func=cmd_submit)

    jobs = add_command(commands, "jobs", "list, show or cancel jobs on a server", [
        "edgeq jobs", "edgeq jobs show 3f2a9c", "edgeq jobs cancel 3f2a9c --target quantizer:8001 --ca ca.pem"])
    jobs.add_argument("action", nargs="?", default="list", choices=["list", "show", "cancel"],
                      help="what to do (default: list)")
    jobs.add_argument("job", nargs="?", help="job id (show, cancel)")
    add_connection_flags(jobs)
    jobs.set_defaults(func=cmd_jobs)

    bench = add_command(commands, "bench", "load-test a KServe v2 gRPC server (edgeq, OVMS, Triton)", [
        "edgeq bench --model vit-fmnist --concurrency 1,4,16 --duration 10",
        "edgeq bench --model vit-fmnist --version 2 --compare-version 1 --json bench.json"])
    bench.add_argument("--model", required=True, help="model name on the server")
    bench.add_argument("--version", type=int, default=0, help="model version (0: the latest)")
    bench.add_argument("--compare-version", type=int, help="alternate rounds with this version; print the ratio")
    bench.add_argument("--concurrency", type=_counts, default="1,4,16",
                       help="comma-separated numbers of requests in flight")
    bench.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency and version")
    bench.add_argument("--max-requests", type=int, default=1_000_000, help="stop a round after this many requests")
    bench.add_argument("--rounds", type=int, default=3, help="alternating rounds with --compare-version")
    bench.add_argument("--batch", type=int, default=1, help="rows per request")
    bench.add_argument("--data", help=".npz with 'inputs' (default: random inputs of the model's shape)")
    bench.add_argument("--json", help="write the table as JSON to this file")
    bench.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    add_connection_flags(bench)
    bench.set_defaults(func=cmd_bench)

    health = add_command(commands, "health", "gRPC health check of a server (exit 0 when SERVING, else 1)", [
        "edgeq health", "edgeq health --target edge-1:8001 --ca ca.pem --cert client.pem --key client.key"])
    health.add_argument("--service", default="", help="service to check (default: the whole server)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    add_connection_flags(health)
    health.set_defaults(func=cmd_health)

    export = add_command(commands, "export", "download a model version as a verified bundle", [
        "edgeq export vit-fmnist --version 1 --out .",
        "edgeq export vit-fmnist --target quantizer:8001 --ca ca.pem --token-file token"])
    export.add_argument("model", help="model name on the server")
    export.add_argument("--version", type=int, default=0, help="version (0: the latest)")
    export.add_argument("--out", default=".", help="folder the bundle is written to")
    add_connection_flags(export)
    export.set_defaults(func=cmd_export)

"""Which async HTTP stack carries the KServe v2 REST door with the least overhead?

The same handler (edgeq_server.rest.codec + edgeq_server.dataplane over one in-process
ModelRegistry serving a tiny model) runs on aiohttp and on starlette+uvicorn (httptools parser), one
after the other in this process's asyncio loop, as the server runs it beside grpc.aio. A client in
its own process sends small JSON infer requests over keep-alive connections (http.client) for a few
seconds per stack and concurrency; throughput and latency percentiles go to a JSON file.

    flock -x /tmp/edgeq-cpu.lock python benchmarks/http_front_door.py --seconds 3 --json docs/results/serving/http_front_door_vnni.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})

CLIENT = r"""
import http.client, json, sys, threading, time
port, seconds, concurrency, body = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
latencies = [[] for _ in range(concurrency)]
def run(slot):
    connection = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(20):  # warm up
        connection.request("POST", "/v2/models/tiny/infer", body, {"Content-Type": "application/json"})
        assert connection.getresponse().read()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        connection.request("POST", "/v2/models/tiny/infer", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200 and answer.read()
        latencies[slot].append(time.perf_counter() - started)
threads = [threading.Thread(target=run, args=(i,)) for i in range(concurrency)]
[t.start() for t in threads]; [t.join() for t in threads]
every = sorted(x for slot in latencies for x in slot)
print(json.dumps({"requests_per_s": len(every) / seconds, "p50_ms": every[len(every) // 2] * 1e3,
                  "p99_ms": every[int(len(every) * 0.99)] * 1e3, "requests": len(every)}))
"""


async def measure(port: int, seconds: float, concurrency: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(port), str(seconds),
                                                   str(concurrency), BODY, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    return json.loads(out)  # type: ignore[no-any-return]


async def run_aiohttp(infer: Callable[[bytes, str | None], Awaitable[tuple[bytes, dict[str, str]]]],
                      seconds: float, concurrency: list[int]) -> list[dict[str, float]]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        body, headers = await infer(await request.read(), request.headers.get("Inference-Header-Content-Length"))
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        return [await measure(port, seconds, c) for c in concurrency]
    finally:
        await runner.cleanup()


async def run_starlette(infer: Callable[[bytes, str | None], Awaitable[tuple[bytes, dict[str, str]]]],
                        seconds: float, concurrency: list[int]) -> list[dict[str, float]]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def handler(request: Request) -> Response:
        body, headers = await infer(await request.body(), request.headers.get("Inference-Header-Content-Length"))
        return Response(body, headers=headers)

    app = Starlette(routes=[Route("/v2/models/{name}/infer", handler, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                           lifespan="off", http="httptools"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        return [await measure(port, seconds, c) for c in concurrency]
    finally:
        server.should_exit = True
        await task


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    import aiohttp
    import starlette
    import uvicorn

    from edgeq.runtime.registry import ModelRegistry
    from edgeq.store import ModelStore
    from edgeq_server import dataplane
    from edgeq_server.rest import codec
    from tests.integration.tiny_model import tiny_store

    folder = Path(tempfile.mkdtemp())
    registry = ModelRegistry(ModelStore(tiny_store(folder / "store")))
    await registry.refresh()

    async def infer(body: bytes, header_length: str | None) -> tuple[bytes, dict[str, str]]:
        request = codec.decode_request(body, header_length)
        answer = await dataplane.infer(registry, "tiny", "", request.inputs, request.outputs)
        return codec.encode_response("tiny", str(answer.target.version), request, answer.names, answer.datatypes,
                                     answer.arrays)

    results: dict[str, object] = {}
    for name, runner in (("aiohttp", run_aiohttp), ("starlette+uvicorn", run_starlette)):
        results[name] = dict(zip((f"concurrency {c}" for c in args.concurrency),
                                 await runner(infer, args.seconds, args.concurrency)))
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return {"date": time.strftime("%Y-%m-%d"), "commit": commit.strip(), "python": platform.python_version(),
            "versions": {"aiohttp": aiohttp.__version__, "starlette": starlette.__version__,
                         "uvicorn": uvicorn.__version__},
            "cpu_flags": [f for f in flags.split(":", 1)[1].split() if f.startswith(("avx", "amx"))],
            "seconds_per_run": args.seconds, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 4])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Overload and stops: a byte budget answered with RESOURCE_EXHAUSTED, SIGTERM under load exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import fmnist_arrays
from tests.integration.server_process import ServerProcess, copy_store

MODEL = "vit-fmnist"


def _request(rows: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    return request


@pytest.fixture(scope="module")
def store(fmnist_result, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    return copy_store(fmnist_result.path.parent.parent, tmp_path_factory.mktemp("overload") / "store")


async def _burst(target: str, request: pb.ModelInferRequest, count: int) -> list[tuple[str, str]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def one() -> tuple[str, str]:
            try:
                await stub.ModelInfer(request)
                return "OK", ""
            except grpc.aio.AioRpcError as error:
                return error.code().name, error.details() or ""

        return list(await asyncio.gather(*[one() for _ in range(count)]))


def test_requests_beyond_the_byte_budget_are_refused_and_the_rest_served(store: Path) -> None:
    inputs, _ = fmnist_arrays()
    batch = np.concatenate([inputs] * 2)[:256]  # 256 rows: 0.8 MB of input
    # 2 MiB: two such requests fit (inputs counted twice, for a merged copy); 8 calls may be read at once.
    server = ServerProcess(store, "--max-inflight-bytes", str(2 << 20), "--max-message-bytes", str(1 << 20),
                           "--max-batch-size", "256").start()
    try:
        outcomes = asyncio.run(_burst(server.target, _request(batch), 60))
        after = asyncio.run(_burst(server.target, _request(inputs[:4]), 4))
    finally:
        assert server.stop() == 0
    codes = [code for code, _ in outcomes]
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, set(codes)
    assert codes.count("OK") >= 1 and codes.count("RESOURCE_EXHAUSTED") >= 1, codes
    budget = [details for code, details in outcomes if "--max-inflight-bytes" in details]
    assert budget, "the byte budget itself refused nothing"  # not only gRPC's concurrency cap
    assert [code for code, _ in after] == ["OK"] * 4


async def _load_then_signal(server: ServerProcess, rows: np.ndarray, clients: int) -> dict[str, int]:
    codes: dict[str, int] = {}
    details: dict[str, str] = {}
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stopping = asyncio.Event()

        async def client() -> None:
            while True:
                try:
                    await stub.ModelInfer(_request(rows))
                    code = "OK"
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                    if code not in ("UNAVAILABLE",):
                        details[code] = error.details() or ""
                codes[code] = codes.get(code, 0) + 1
                if stopping.is_set() and code != "OK":
                    return

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.sleep(1.5)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert set(details) <= {"OK"}, details
    return codes


def test_sigterm_under_load_exits_cleanly_and_answers_every_request(store: Path) -> None:
    inputs, _ = fmnist_arrays()
    for _ in range(3):
        server = ServerProcess(store, "--grace-seconds", "2").start()
        began = time.monotonic()
        codes = asyncio.run(_load_then_signal(server, inputs[:64], 24))
        assert server.stop(timeout=60) == 0, server.log.read_text()[-3000:]
        assert time.monotonic() - began < 60
        assert codes.get("OK", 0) > 24, codes
        assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    log = server.log.read_text()
    assert "inference requests in flight at the signal" in log and "cut off" in log

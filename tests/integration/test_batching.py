"""Dynamic batching, cancellation and threads from the CPU quota, on a real server over real gRPC."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import fmnist_arrays
from tests.integration.server_process import ServerProcess, copy_store

MODEL = "vit-fmnist"


def _request(rows: np.ndarray, request_id: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL, id=request_id)
    request.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    return request


def _logits(response: pb.ModelInferResponse) -> np.ndarray:
    shape = list(response.outputs[0].shape)
    return np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(shape)


def _in_process(store: Path, inputs: np.ndarray) -> np.ndarray:
    """Unbatched reference: each row alone through OpenVINO in this process."""
    from edgeq.compile import compile_cpu

    request = compile_cpu(str(store / MODEL / "1" / "model.xml")).create_infer_request()
    return np.concatenate([request.infer({0: inputs[i:i + 1]})[0].copy() for i in range(len(inputs))])


async def _concurrently(target: str, requests: list[pb.ModelInferRequest]) -> list[pb.ModelInferResponse]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return list(await asyncio.gather(*[stub.ModelInfer(r) for r in requests]))


def _serve_concurrently(store: Path, requests: list[pb.ModelInferRequest], *flags: str) -> tuple[Any, Any, Any]:
    """A server with `flags` answers `requests` all at once; (responses, ModelConfig, ModelStatistics)."""
    server = ServerProcess(store, *flags).start()
    try:
        responses = asyncio.run(_concurrently(server.target, requests))
        stub = pb_grpc.GRPCInferenceServiceStub(server.channel())
        config = stub.ModelConfig(pb.ModelConfigRequest(name=MODEL)).config
        statistics = stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL)).model_stats[0]
    finally:
        assert server.stop() == 0
    return responses, config, statistics


@pytest.fixture(scope="module")
def store(fmnist_result, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    return copy_store(fmnist_result.path.parent.parent, tmp_path_factory.mktemp("batching") / "store")


def test_merged_batches_give_each_caller_its_own_rows(store: Path) -> None:
    """Callers of different sizes, merged under load, get exactly the rows unbatched inference gives."""
    inputs, _ = fmnist_arrays()
    sizes = [1, 3, 1, 2, 5, 1, 1, 4] * 6  # 144 rows in 48 callers
    offsets = np.cumsum([0, *sizes])
    requests = [_request(inputs[offsets[i]:offsets[i + 1]], f"r{i}") for i in range(len(sizes))]
    responses, config, statistics = _serve_concurrently(
        store, requests, "--batch-delay-us", "20000", "--max-merged-batch", "16", "--preferred-batch-sizes", "16")
    expected = _in_process(store, inputs[:offsets[-1]])
    for i, response in enumerate(responses):
        assert response.id == f"r{i}"
        np.testing.assert_allclose(_logits(response), expected[offsets[i]:offsets[i + 1]], rtol=1e-4, atol=1e-4)
    merged = {b.batch_size: b.compute_infer.count for b in statistics.batch_stats}
    assert max(merged) > 1, f"no request was merged: {merged}"  # the case under test really happened
    assert sum(size * count for size, count in merged.items()) == offsets[-1] == statistics.inference_count
    assert statistics.execution_count == sum(merged.values()) < len(sizes)
    assert config.dynamic_batching.max_queue_delay_microseconds == 20000
    assert list(config.dynamic_batching.preferred_batch_size) == [16]


def test_no_merging_when_turned_off_and_one_row_runs_on_the_static_copy(store: Path) -> None:
    """LATENCY hint: one-row requests run on the static batch-1 copy, two-row ones on the dynamic model."""
    inputs, _ = fmnist_arrays()
    sizes = [1, 2] * 8
    offsets = np.cumsum([0, *sizes])
    requests = [_request(inputs[offsets[i]:offsets[i + 1]]) for i in range(len(sizes))]
    responses, config, statistics = _serve_concurrently(store, requests, "--max-merged-batch", "1",
                                                        "--performance-hint", "LATENCY")
    assert config.WhichOneof("scheduling_choice") is None
    assert config.parameters["static_batch_one"].string_value == "true"
    assert config.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
    assert [(b.batch_size, b.compute_infer.count) for b in statistics.batch_stats] == [(1, 8), (2, 8)]
    np.testing.assert_allclose(np.concatenate([_logits(r) for r in responses]), _in_process(store, inputs[:24]),
                               rtol=1e-4, atol=1e-4)


async def _storm_then_normal(target: str, rows: np.ndarray) -> tuple[dict[str, int], float, np.ndarray]:
    """200 requests with 1 ms deadlines beside 8 closed-loop callers, then normal requests."""
    codes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stop = asyncio.Event()

        async def background() -> None:
            while not stop.is_set():
                await stub.ModelInfer(_request(rows[:8]))

        async def impatient() -> None:
            try:
                await stub.ModelInfer(_request(rows[:8]), timeout=0.001)
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] = codes.get(error.code().name, 0) + 1

        load = [asyncio.create_task(background()) for _ in range(8)]
        await asyncio.gather(*[impatient() for _ in range(200)])
        stop.set()
        await asyncio.gather(*load)
        began = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*[stub.ModelInfer(_request(rows[i:i + 1])) for i in range(32)])
        elapsed = asyncio.get_running_loop().time() - began
    return codes, elapsed, np.concatenate([_logits(a) for a in answers])


def _inflight(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    match = re.search(r"^edgeq_inference_inflight (\S+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return float(match.group(1))


def test_requests_that_give_up_free_nothing_early_and_leak_nothing(store: Path) -> None:
    inputs, _ = fmnist_arrays()
    server = ServerProcess(store, "--metrics-port", "0", "--batch-delay-us", "2000").start()
    try:
        codes, elapsed, logits = asyncio.run(_storm_then_normal(server.target, inputs))
        inflight = _inflight(server.metrics_port)
        assert server.process is not None and server.process.poll() is None
    finally:
        assert server.stop() == 0
    assert codes.get("DEADLINE_EXCEEDED", 0) > 100, codes  # the storm really missed its deadlines
    assert set(codes) <= {"OK", "DEADLINE_EXCEEDED"}, codes
    assert inflight == 0
    assert elapsed < 30
    np.testing.assert_allclose(logits, _in_process(store, inputs[:32]), rtol=1e-4, atol=1e-4)


def test_threads_follow_the_cpus_the_server_may_use(store: Path) -> None:
    """Confined to one CPU (`taskset -c 0`), OpenVINO gets one thread and one stream, whatever the host has."""
    server = ServerProcess(store, launcher=("taskset", "-c", "0")).start()
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(server.channel())
        config = stub.ModelConfig(pb.ModelConfigRequest(name=MODEL)).config
    finally:
        assert server.stop() == 0
    assert config.parameters["INFERENCE_NUM_THREADS"].string_value == "1"
    assert config.parameters["NUM_STREAMS"].string_value == "1"
    assert config.parameters["infer_requests"].string_value == "1"


def _config(store: Path, *flags: str) -> Any:
    server = ServerProcess(store, *flags).start()
    try:
        return pb_grpc.GRPCInferenceServiceStub(server.channel()).ModelConfig(pb.ModelConfigRequest(name=MODEL)).config
    finally:
        assert server.stop() == 0


def test_one_row_copy_is_on_by_default_and_unpins_unless_told(store: Path) -> None:
    """Two compiled copies pinned to the same cores would collide, so the default copy runs unpinned;
    an explicit --cpu-pinning and --static-batch-one false are obeyed."""
    default = _config(store).parameters
    pinned = _config(store, "--cpu-pinning", "true").parameters
    alone = _config(store, "--static-batch-one", "false").parameters
    assert (default["static_batch_one"].string_value, default["ENABLE_CPU_PINNING"].string_value) == ("true", "false")
    assert (pinned["static_batch_one"].string_value, pinned["ENABLE_CPU_PINNING"].string_value) == ("true", "true")
    assert alone["static_batch_one"].string_value == "false"

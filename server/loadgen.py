"""Load generator behind `edgeq bench`: drives any KServe v2 gRPC server with real inputs.

Closed loop: `concurrency` workers each send the next request when the previous answers, for
`duration` seconds or `max_requests` requests, whichever comes first. With `compare_version`,
rounds alternate between two versions of a model and the throughput ratio is reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from edgeq.runtime.tensors import DATATYPES
from edgeq_server.client import Security
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc


@dataclass
class LoadResult:
    model: str
    version: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_error: str = ""


SEQUENCE = 16


def _synthetic(name: str, dtype: np.dtype, shape: list[int], seed: int) -> np.ndarray:
    """Valid made-up input: noise for floats; for integers (token ids, masks, segment ids) values every
    embedding table has: 1 for a mask (attend to every token), small ids (1..99) for ids, 0 otherwise."""
    if dtype.kind == "f":
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if "mask" in name:
        return np.ones(shape, dtype=dtype)
    if name.endswith("ids") and "type" not in name:
        return np.random.default_rng(seed).integers(1, 100, shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


async def _inputs(stub: pb_grpc.GRPCInferenceServiceStub, model: str, version: str, batch: int,
                  data: np.ndarray | None) -> pb.ModelInferRequest:
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version))
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for index, tensor in enumerate(metadata.inputs):
        # a dynamic dimension past the batch is a sequence length: a short sentence's worth
        shape = [batch if i == 0 and d < 0 else (d if d > 0 else SEQUENCE) for i, d in enumerate(tensor.shape)]
        dtype = DATATYPES.get(tensor.datatype, np.dtype(np.float32))
        if data is not None and index == 0:
            array = np.ascontiguousarray(data[:batch], dtype=dtype)
            shape = list(array.shape)
        else:
            array = _synthetic(tensor.name, dtype, shape, index)
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
        request.raw_input_contents.append(array.tobytes())
    return request


async def run_load(target: str, model: str, *, version: str = "", concurrency: int = 1, duration: float = 10.0,
                   max_requests: int = 1_000_000, batch: int = 1, data: np.ndarray | None = None,
                   channel_options: list[tuple[str, Any]] | None = None, on_tick: Any = None,
                   security: Security | None = None) -> LoadResult:
    """`security`: TLS/mTLS credentials and token for a secured server (default: a plain channel)."""
    async with (security or Security()).aio_channel(target, channel_options or [
            ("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = await _inputs(stub, model, version, batch, data)
        latencies: list[float] = []
        errors: list[str] = []
        sent = 0
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                begin = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=30)
                    latencies.append(time.perf_counter() - begin)
                except grpc.aio.AioRpcError as error:
                    errors.append(f"{error.code().name}: {error.details()}")
                if on_tick:
                    on_tick(len(latencies) + len(errors))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return LoadResult(model, version or "latest", concurrency, len(latencies), len(errors), seconds,
                      len(latencies) * batch / seconds, float(np.percentile(ms, 50)), float(np.percentile(ms, 90)),
                      float(np.percentile(ms, 99)), float(ms.max()), errors[0] if errors else "")

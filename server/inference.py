"""KServe v2 / Triton `inference.GRPCInferenceService` over edgeq's ModelRegistry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np

import edgeq
from edgeq.errors import EdgeqError, FailedPrecondition, InvalidArgument, NotFound
from edgeq.runtime.engine import BatchingPolicy
from edgeq.runtime.registry import LoadedVersion, ModelRegistry
from edgeq.runtime.tensors import CONTENTS_FIELD, from_raw, from_typed
from edgeq_server.errors import status_of
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from edgeq_server.gen.inference import model_config_pb2 as config_pb

EXTENSIONS = ["model_repository", "model_configuration", "statistics", "binary_tensor_data"]
PLATFORM = "openvino_ir"


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Request tensors as numpy arrays (zero-copy views of raw contents)."""
    if request.raw_input_contents and len(request.raw_input_contents) != len(request.inputs):
        raise InvalidArgument(f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} inputs")
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise InvalidArgument(f"input {tensor.name!r} appears twice")
        shape = list(tensor.shape)
        if request.raw_input_contents:
            arrays[tensor.name] = from_raw(tensor.name, tensor.datatype, shape, request.raw_input_contents[index])
        else:
            field = CONTENTS_FIELD.get(tensor.datatype)
            values = getattr(tensor.contents, field) if field else []
            arrays[tensor.name] = from_typed(tensor.name, tensor.datatype, shape, values)
    if not arrays:
        raise InvalidArgument("the request has no inputs")
    return arrays


def _metadata_tensors(specs: list[Any]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs]


def _dynamic_batching(policy: BatchingPolicy) -> config_pb.ModelDynamicBatching | None:
    """Triton's field for what the engine does: merging callers, and how long a batch may wait."""
    if not policy.merges:
        return None
    return config_pb.ModelDynamicBatching(preferred_batch_size=list(policy.preferred_sizes),
                                          max_queue_delay_microseconds=policy.delay_us)


def _config_type(datatype: str) -> int:
    return int(config_pb.DataType.Value(f"TYPE_{datatype}"))


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry, ready: Any):
        self.registry = registry
        self.ready = ready  # callable: is the server ready?

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self.ready()))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        try:
            self.registry.get(request.name, request.version)
        except (NotFound, FailedPrecondition):  # unknown, not loaded, or held back by the speed gate
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="edgeq", version=edgeq.__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        target = self.registry.get(request.name, request.version)
        versions = sorted(self.registry.loaded.get(request.name, {}))
        return pb.ModelMetadataResponse(name=target.name, versions=[str(v) for v in versions], platform=PLATFORM,
                                        inputs=_metadata_tensors(target.inputs), outputs=_metadata_tensors(target.outputs))

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        target = self.registry.get(request.name, request.version)
        config = config_pb.ModelConfig(
            name=target.name, platform=PLATFORM, backend="openvino", max_batch_size=self.registry.config.max_batch_size,
            version_policy=config_pb.ModelVersionPolicy(
                latest=config_pb.ModelVersionPolicy.Latest(num_versions=self.registry.config.keep_versions)),
            dynamic_batching=_dynamic_batching(self.registry.config.batching),
            parameters={key: config_pb.ModelParameter(string_value=value) for key, value in target.properties.items()},
            input=[config_pb.ModelInput(name=s.name, data_type=_config_type(s.datatype), dims=list(s.shape[1:]))
                   for s in target.inputs],
            output=[config_pb.ModelOutput(name=s.name, data_type=_config_type(s.datatype), dims=list(s.shape[1:]))
                    for s in target.outputs],
        )
        return pb.ModelConfigResponse(config=config)

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        target: LoadedVersion = self.registry.get(request.model_name, request.model_version)
        arrays = decode_inputs(request)
        outputs = await self.registry.infer(target, arrays)
        wanted = [o.name for o in request.outputs]
        names = [s.name for s in target.outputs]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise InvalidArgument(f"model {target.name!r} has no output(s) {unknown}; its outputs are {names}")
        order = [names.index(n) for n in wanted] if wanted else range(len(names))
        response = pb.ModelInferResponse(model_name=target.name, model_version=str(target.version), id=request.id)
        for i in order:
            array = outputs[i]
            response.outputs.add(name=names[i], datatype=target.outputs[i].datatype, shape=list(array.shape))
            response.raw_output_contents.append(array.tobytes())
        return response

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        return await self._infer(request)

    async def ModelStreamInfer(self, requests: AsyncIterator[pb.ModelInferRequest],
                               context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for request in requests:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except EdgeqError as error:  # a stream reports errors per request and goes on
                yield pb.ModelStreamInferResponse(
                    error_message=f"[{status_of(error).name}] {error}",
                    infer_response=pb.ModelInferResponse(id=request.id, model_name=request.model_name))

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        if request.name:
            targets = [self.registry.get(request.name, request.version)] if request.version else \
                list(self.registry.loaded.get(request.name, {}).values())
            if not targets:
                self.registry.get(request.name)  # raises NOT_FOUND with a helpful message
        else:
            targets = self.registry.all_loaded()
        response = pb.ModelStatisticsResponse()
        for target in targets:
            s = target.stats
            response.model_stats.add(
                name=target.name, version=str(target.version), last_inference=s.last_inference_ms,
                inference_count=s.inference_count, execution_count=s.execution_count,
                inference_stats=pb.InferStatistics(
                    success=pb.StatisticDuration(count=s.success.count, ns=s.success.ns),
                    fail=pb.StatisticDuration(count=s.fail.count, ns=s.fail.ns),
                    queue=pb.StatisticDuration(count=s.queue.count, ns=s.queue.ns),
                    compute_input=pb.StatisticDuration(count=s.compute_infer.count, ns=0),
                    compute_infer=pb.StatisticDuration(count=s.compute_infer.count, ns=s.compute_infer.ns),
                    compute_output=pb.StatisticDuration(count=s.compute_infer.count, ns=0)),
                batch_stats=[pb.InferBatchStatistics(
                    batch_size=rows, compute_input=pb.StatisticDuration(count=d.count),
                    compute_infer=pb.StatisticDuration(count=d.count, ns=d.ns),
                    compute_output=pb.StatisticDuration(count=d.count)) for rows, d in sorted(s.batches.items())])
        return response

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        for name in self.registry.store.names():
            loaded = self.registry.loaded.get(name, {})
            for info in self.registry.store.versions(name):
                state = "READY" if info.version in loaded else \
                    "LOADING" if self.registry.is_loading(name, info.version) else "UNAVAILABLE"
                if request.ready and state != "READY":
                    continue
                held = info.held()
                reason = f"held back: {held}" if held else "unloaded by request" \
                    if name in self.registry.unloaded_by_user else \
                    ("" if state == "READY" else "older than the versions kept loaded")
                response.models.add(name=name, version=str(info.version), state=state, reason=reason)
        return response

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  context: grpc.aio.ServicerContext) -> pb.RepositoryModelLoadResponse:
        await self.registry.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context: grpc.aio.ServicerContext) -> pb.RepositoryModelUnloadResponse:
        await self.registry.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

"""KServe v2 / Triton `inference.GRPCInferenceService` over edgeq's ModelRegistry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import ParseDict

from edgeq.errors import EdgeqError, InvalidArgument
from edgeq.runtime.registry import ModelRegistry
from edgeq.runtime.tensors import CONTENTS_FIELD, from_raw, from_typed
from edgeq_server import dataplane
from edgeq_server.errors import status_of
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from edgeq_server.gen.inference import model_config_pb2 as config_pb


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
    return arrays  # none at all: dataplane.infer refuses it, for both doors


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry, ready: Any):
        self.registry = registry
        self.ready = ready  # callable: is the server ready?

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self.ready()))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=dataplane.model_ready(self.registry, request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return ParseDict(dataplane.server_metadata(), pb.ServerMetadataResponse())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        return ParseDict(dataplane.model_metadata(self.registry, request.name, request.version),
                         pb.ModelMetadataResponse())

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        config = dataplane.model_config(self.registry, request.name, request.version)
        return pb.ModelConfigResponse(config=ParseDict(config, config_pb.ModelConfig()))

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        self.registry.get(request.model_name, request.model_version)  # an unknown model is NOT_FOUND before bad inputs
        answer = await dataplane.infer(self.registry, request.model_name, request.model_version,
                                       decode_inputs(request), [o.name for o in request.outputs])
        response = pb.ModelInferResponse(model_name=answer.target.name, model_version=str(answer.target.version),
                                         id=request.id)
        for name, datatype, array in zip(answer.names, answer.datatypes, answer.arrays):
            response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
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
        return ParseDict(dataplane.model_statistics(self.registry, request.name, request.version),
                         pb.ModelStatisticsResponse())

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        return ParseDict({"models": dataplane.repository_index(self.registry, request.ready)},
                         pb.RepositoryIndexResponse())

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  context: grpc.aio.ServicerContext) -> pb.RepositoryModelLoadResponse:
        await self.registry.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context: grpc.aio.ServicerContext) -> pb.RepositoryModelUnloadResponse:
        await self.registry.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

"""KServe v2 / Triton `inference.GRPCInferenceService` over edgeq's ModelRegistry.

ModelInfer and ModelStreamInfer are served from the raw bytes of their messages (`add_to_server`):
gRPC hands a handler with a deserializer messages it has already read and parsed, so a request
refused for lack of memory would have cost its full size twice over by then. Without a deserializer
each message is admitted (`ModelRegistry.receiving`) before a byte of it is read, and parsed only
once admitted. On the wire both are the calls the protocol defines (ModelInfer unary).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import ParseDict
from google.protobuf.message import DecodeError

from edgeq.errors import EdgeqError, InvalidArgument
from edgeq.runtime.memory import Reservation
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


def _unpack(registry: ModelRegistry, request: pb.ModelInferRequest
            ) -> tuple[str, str, str, list[str], dict[str, np.ndarray]]:
    """Model name, version, request id, outputs asked for and input tensors of a request."""
    registry.get(request.model_name, request.model_version)  # an unknown model is NOT_FOUND before bad inputs
    return (request.model_name, request.model_version, request.id, [o.name for o in request.outputs],
            decode_inputs(request))


class _Registrations:
    """Stands in for the server while a generated `add_*_to_server` registers its handlers, so that
    one handler can be replaced before they reach the real server."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, dict(handlers)


def add_to_server(servicer: "InferenceServicer", server: grpc.aio.Server) -> None:
    """Register the inference service, ModelInfer and ModelStreamInfer as raw-bytes request-streaming handlers."""
    registrations = _Registrations()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, registrations)
    registrations.handlers["ModelInfer"] = grpc.stream_unary_rpc_method_handler(
        servicer.ModelInferRaw, request_deserializer=None, response_serializer=pb.ModelInferResponse.SerializeToString)
    registrations.handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInferRaw, request_deserializer=None,
        response_serializer=pb.ModelStreamInferResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(registrations.service,
                                                                          registrations.handlers),))
    server.add_registered_method_handlers(registrations.service, registrations.handlers)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry, ready: Any, max_message_bytes: int = 64 << 20):
        self.registry = registry
        self.ready = ready  # callable: is the server ready?
        self.max_message_bytes = max_message_bytes

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

    async def _answer(self, name: str, version: str, request_id: str, wanted: list[str],
                      arrays: dict[str, np.ndarray], reservation: Reservation | None = None) -> pb.ModelInferResponse:
        answer = await dataplane.infer(self.registry, name, version, arrays, wanted, reservation)
        response = pb.ModelInferResponse(model_name=answer.target.name, model_version=str(answer.target.version),
                                         id=request_id)
        for name, datatype, array in zip(answer.names, answer.datatypes, answer.arrays):
            response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
            response.raw_output_contents.append(array.tobytes())
        return response

    def _parse(self, method: str, message: bytes, reservation: Reservation) -> pb.ModelInferRequest:
        """An admitted message read: its reservation settled to its size, then parsed."""
        self.registry.received(reservation, len(message))
        try:
            return pb.ModelInferRequest.FromString(message)
        except DecodeError as error:
            raise InvalidArgument(f"{method}: the request message cannot be parsed ({error})") from None

    async def ModelInferRaw(self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                            ) -> pb.ModelInferResponse:
        """ModelInfer admitted before its message is read (see the module docstring)."""
        with await self.registry.receiving(self.max_message_bytes) as reservation:
            message = await context.read()
            if message is grpc.aio.EOF:
                raise InvalidArgument("ModelInfer without a request message")
            request = self._parse("ModelInfer", message, reservation)
            del message
            unpacked = _unpack(self.registry, request)
            del request  # the tensors are copies of its contents: only they wait in the queue
            return await self._answer(*unpacked, reservation)

    async def ModelStreamInferRaw(self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                                  ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """ModelStreamInfer, each message admitted before it is read. A request's own error (bad input,
        unknown model, ...) is answered inside the stream, which goes on, as Triton does; a message the
        byte budget cannot admit has not been read, so no request can carry the refusal: the stream
        ends with RESOURCE_EXHAUSTED, as a ModelInfer would."""
        while True:
            with await self.registry.receiving(self.max_message_bytes) as reservation:
                message = await context.read()
                if message is grpc.aio.EOF:
                    return
                request = None
                try:
                    request = self._parse("ModelStreamInfer", message, reservation)
                    del message
                    response = pb.ModelStreamInferResponse(
                        infer_response=await self._answer(*_unpack(self.registry, request), reservation))
                except EdgeqError as error:
                    response = pb.ModelStreamInferResponse(
                        error_message=f"[{status_of(error).name}] {error}",
                        infer_response=pb.ModelInferResponse(id=request.id, model_name=request.model_name)
                        if request is not None else None)
                yield response

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

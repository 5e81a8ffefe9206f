"""Server interceptor: maps edgeq errors to status codes and records metrics, for every RPC;
`replace_behaviour`, which it and the token check (edgeq_server.auth) wrap handlers with."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from edgeq.errors import EdgeqError
from edgeq_server.errors import status_of
from edgeq_server.metrics import ServerMetrics

log = logging.getLogger("edgeq.server")
Behaviour = Callable[..., Any]


def replace_behaviour(handler: grpc.RpcMethodHandler, wrap: Callable[[Behaviour], Behaviour],
                      wrap_stream: Callable[[Behaviour], Behaviour] | None = None) -> grpc.RpcMethodHandler:
    """The handler rebuilt, whatever its streaming kind: `wrap` applies to unary-response
    behaviours, `wrap_stream` (default: `wrap`) to streaming ones."""
    streaming = wrap_stream or wrap
    serializers = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), *serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), *serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), *serializers)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), *serializers)


class ErrorsAndMetrics(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        return replace_behaviour(handler, lambda b: self._unary(b, method), lambda b: self._stream(b, method))

    async def _fail(self, context: grpc.aio.ServicerContext, method: str, error: BaseException) -> None:
        code = status_of(error)
        if not isinstance(error, EdgeqError):
            log.exception("unexpected error in %s", method, exc_info=error)
            message = f"internal error in {method}: {type(error).__name__}: {error}"
        else:
            message = str(error)
        self.metrics.requests.labels(method, code.name).inc()
        await context.abort(code, message)

    def _unary(self, behaviour: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                response = await behaviour(request, context)
            except (EdgeqError, Exception) as error:  # noqa: BLE001 - mapped to a status code here, once
                if isinstance(error, grpc.aio.AbortError):
                    raise
                await self._fail(context, method, error)
                raise  # unreachable: abort raises
            self.metrics.requests.labels(method, "OK").inc()
            self.metrics.latency.labels(method).observe(time.perf_counter() - started)
            return response

        return wrapped

    def _stream(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                async for response in behaviour(request, context):
                    yield response
            except (EdgeqError, Exception) as error:  # noqa: BLE001
                if isinstance(error, grpc.aio.AbortError):
                    raise
                await self._fail(context, method, error)
            else:
                self.metrics.requests.labels(method, "OK").inc()
                self.metrics.latency.labels(method).observe(time.perf_counter() - started)

        return wrapped

"""Rebuild a gRPC method handler with a new behaviour, whatever its streaming kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behaviour = Callable[..., Any]


def replace_behaviour(handler: grpc.RpcMethodHandler, wrap: Callable[[Behaviour], Behaviour],
                      wrap_stream: Callable[[Behaviour], Behaviour] | None = None) -> grpc.RpcMethodHandler:
    """`wrap` applies to unary-response behaviours, `wrap_stream` (default: `wrap`) to streaming ones."""
    streaming = wrap_stream or wrap
    serializers = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), *serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), *serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), *serializers)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), *serializers)

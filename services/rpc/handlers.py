"""Rewrapping a gRPC method handler's behaviour, whichever of the four kinds it is: what the
server interceptors (admission, authentication) are built on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def wrap_behaviour(
    handler: grpc.RpcMethodHandler[Any, Any],
    wrap: Callable[[Callable[..., Any], bool], Callable[..., Any]],
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with its behaviour replaced by `wrap(behaviour, response_streaming)`, for
    whichever of the four kinds of method it is."""
    kind = {
        (False, False): (grpc.unary_unary_rpc_method_handler, handler.unary_unary),
        (False, True): (grpc.unary_stream_rpc_method_handler, handler.unary_stream),
        (True, False): (grpc.stream_unary_rpc_method_handler, handler.stream_unary),
        (True, True): (grpc.stream_stream_rpc_method_handler, handler.stream_stream),
    }
    make, behaviour = kind[(handler.request_streaming, handler.response_streaming)]
    if behaviour is None:
        raise ValueError(f"{handler} has no behaviour of its own kind")
    return make(
        wrap(behaviour, handler.response_streaming),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )

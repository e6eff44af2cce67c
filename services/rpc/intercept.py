"""What the three server interceptors (observation, authentication, admission) share: the
types of `intercept_service`, and the step before each decides anything."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import grpc

# What a server interceptor is given to call on, and what it returns: the method's handler,
# None for a method the server does not serve. (Strings: grpc's classes are generic only in
# their type stubs.)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any] | None"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Handler]"
Metadata: TypeAlias = Mapping[str, "str | bytes"]


class CallInterceptor(grpc.ServerInterceptor, abc.ABC):
    """A server interceptor that passes methods the server does not serve, and those under
    the prefixes in `passes`, through untouched, and decides every other call from its full
    method name and its metadata (the last value of a repeated key)."""

    passes: tuple[str, ...] = ()

    def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = continuation(details)
        if handler is None or details.method.startswith(self.passes):
            return handler
        return self.intercept(handler, details.method, dict(details.invocation_metadata or ()))

    @abc.abstractmethod
    def intercept(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, metadata: Metadata
    ) -> Handler:
        """What serves a call of `method`: `handler` itself, wrapped, or one that refuses."""

"""The types of a gRPC server interceptor's `intercept_service`, written once for the three
interceptors (observation, authentication, admission)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

# What a server interceptor is given to call on, and what it returns: the method's handler,
# None for a method the server does not serve. (Strings: grpc's classes are generic only in
# their type stubs.)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any] | None"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Handler]"

"""Asking a server whether it is serving (standard gRPC health checking)."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(target: str, service: str = "", timeout: float = 1.0) -> int | None:
    """The health status `target` reports for `service`, or None if it does not answer."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            # types-grpcio-health-checking declares HealthStub without its methods
            return int(stub.Check(request, timeout=timeout).status)  # type: ignore[attr-defined]
        except grpc.RpcError:
            return None


def wait_for(target: str, want: int = SERVING, timeout: float = 60.0) -> None:
    """Block until `target` reports `want`; TimeoutError otherwise."""
    deadline = time.time() + timeout
    while status(target) != want:
        if time.time() > deadline:
            raise TimeoutError(f"{target} did not report status {want} within {timeout:.0f} s")
        time.sleep(0.2)

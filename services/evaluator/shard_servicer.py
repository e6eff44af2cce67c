"""ShardService over gRPC: a peer's shard of a query (internal; see protos/.../shard_service)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from cryptorec.services.evaluator.handler import EvaluatorHandler
from cryptorec.services.evaluator.shards.task import SHARD_SLOT_WAIT_SECONDS, ShardTask
from cryptorec.services.observability.current import note, phase
from cryptorec.services.rpc.convert import backend_for
from cryptorec.services.rpc.errors import streaming, unary
from cryptorec.v1 import shard_service_pb2 as pb
from cryptorec.v1 import shard_service_pb2_grpc as pb_grpc


class ShardServicer(pb_grpc.ShardServiceServicer):
    def __init__(self, handler: EvaluatorHandler) -> None:
        self.handler = handler

    @unary
    def FirstProduct(
        self, request: pb.FirstProductRequest, context: grpc.ServicerContext
    ) -> pb.FirstProductResponse:
        task = task_of(request.shard)
        with phase("evaluate"):
            partial = self.handler.shard_first(
                task,
                list(request.ciphertexts),
                lambda: not context.is_active(),
                SHARD_SLOT_WAIT_SECONDS,
            )
        return pb.FirstProductResponse(partial=partial)

    @streaming
    def SecondProduct(
        self, request: pb.SecondProductRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SecondProductResponse]:
        task = task_of(request.shard)
        replies = self.handler.shard_second(
            task,
            request.first,
            request.start,
            lambda: not context.is_active(),
            SHARD_SLOT_WAIT_SECONDS,
        )
        for block, reply in enumerate(replies, start=request.start):
            yield pb.SecondProductResponse(block=block, reply=reply)


def task_of(ref: pb.ShardRef) -> ShardTask:
    """The shard task a request names (INVALID_ARGUMENT for unknown enums)."""
    backend = backend_for(ref.scheme, ref.mode)
    note(scheme=backend.scheme, mode=backend.mode, model_version=ref.model_version)
    return ShardTask(ref.model_version, ref.key_id, backend, ref.shard, ref.shard_count)

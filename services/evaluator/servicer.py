"""EvaluatorService over gRPC: reads the header, admits the query, receives its ciphertexts
(within the upload deadline), has the handler compute it and streams the reply in chunks."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from cryptorec.services.errors import BadRequestError
from cryptorec.services.evaluator.handler import EvaluatorHandler, QueryHeader, Reply
from cryptorec.services.observability.current import phase
from cryptorec.services.rpc.admission import current_upload
from cryptorec.services.rpc.auth import current_client
from cryptorec.services.rpc.checksum import chunk_checksum
from cryptorec.services.rpc.convert import backend_for
from cryptorec.services.rpc.errors import streaming
from cryptorec.services.rpc.options import CHUNK_BYTES
from cryptorec.services.rpc.streams import groups_by_bytes, header_then_chunks
from cryptorec.v1 import evaluator_service_pb2 as pb
from cryptorec.v1 import evaluator_service_pb2_grpc as pb_grpc


class EvaluatorServicer(pb_grpc.EvaluatorServiceServicer):
    def __init__(self, handler: EvaluatorHandler) -> None:
        self.handler = handler

    @streaming
    def Predict(
        self, request_iterator: Iterator[pb.PredictRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PredictResponse]:
        with phase("receive"):
            header, chunks = header_then_chunks(request_iterator)
            query = self.handler.admit(
                QueryHeader(
                    model_version=header.model_version,
                    key_id=header.key_id,
                    backend=backend_for(header.scheme, header.mode),
                    ciphertext_count=header.ciphertext_count,
                ),
                current_client(),
            )
            deadline = current_upload()
            if deadline is not None:
                deadline.expect(query.upload_bytes)
            ciphertexts = receive(chunks, query.spec.ciphertexts_per_query)
        reply = self.handler.evaluate(query, ciphertexts, lambda: not context.is_active())
        if reply is not None:
            with phase("send"):
                yield from reply_chunks(reply, context)


def receive(chunks: Iterator[pb.CiphertextChunk], expected: int) -> list[bytes]:
    """The ciphertexts of numbered chunks, exactly `expected` of them."""
    ciphertexts: list[bytes] = []
    for index, chunk in enumerate(chunks):
        if chunk.chunk_index != index:
            raise BadRequestError(f"chunk {chunk.chunk_index} arrived where {index} was due")
        ciphertexts.extend(chunk.ciphertexts)
        if len(ciphertexts) > expected:
            raise BadRequestError(f"more than the announced {expected} ciphertexts")
    if len(ciphertexts) != expected:
        raise BadRequestError(f"received {len(ciphertexts)} ciphertexts, expected {expected}")
    return ciphertexts


def reply_chunks(reply: Reply, context: grpc.ServicerContext) -> Iterator[pb.PredictResponse]:
    """The reply as indexed, checksummed chunks of about CHUNK_BYTES; stops if the client goes."""
    groups = groups_by_bytes([len(r) for r in reply.replies], CHUNK_BYTES)
    for index, group in enumerate(groups):
        if not context.is_active():
            return
        first = reply.ranges[group[0]][0]
        count = sum(reply.ranges[i][1] for i in group)
        cts = reply.replies[group.start : group.stop]
        yield pb.PredictResponse(
            chunk_index=index,
            total_chunks=len(groups),
            first_item=first,
            count=count,
            model_version=reply.version,
            ciphertexts=cts,
            checksum=chunk_checksum(index, first, count, reply.version, cts),
        )

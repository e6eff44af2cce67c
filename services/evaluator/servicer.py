"""EvaluatorService over gRPC: reads the header, admits the query, receives its ciphertexts
(within the upload deadline), has the handler compute it and streams the reply in chunks as
its blocks are computed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from cryptorec.services.errors import BadRequestError, about
from cryptorec.services.evaluator.handler import EvaluatorHandler
from cryptorec.services.evaluator.query import Query, QueryHeader
from cryptorec.services.evaluator.shards.scatter import ReplyBlock
from cryptorec.services.observability.current import Timer, phase
from cryptorec.services.rpc.admission import UploadBudget, UploadShare, pause_upload
from cryptorec.services.rpc.auth import current_client
from cryptorec.services.rpc.checksum import chunk_checksum
from cryptorec.services.rpc.convert import backend_for, kind_of
from cryptorec.services.rpc.errors import streaming
from cryptorec.services.rpc.options import REPLY_CHUNK_BYTES
from cryptorec.services.rpc.streams import header_then_chunks
from cryptorec.v1 import evaluator_service_pb2 as pb
from cryptorec.v1 import evaluator_service_pb2_grpc as pb_grpc


class EvaluatorServicer(pb_grpc.EvaluatorServiceServicer):
    """Predict and PredictWhole: receive a query's ciphertexts, answer chunk by chunk."""

    def __init__(self, handler: EvaluatorHandler, budget: UploadBudget) -> None:
        self.handler = handler
        # A query holds two bytes of memory per byte of its ciphertexts while it is received
        # and computed: the bytes received, and the ciphertexts loaded from them.
        self.uploads = UploadShare(budget, per_byte=2, what="this query")

    @streaming
    def Predict(
        self, request_iterator: Iterator[pb.PredictRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PredictResponse]:
        with contextlib.ExitStack() as held:
            with phase("receive"):
                header, chunks = header_then_chunks(request_iterator)
                pause_upload()
                query = self.handler.admit(query_header(header), current_client())
                answered = held.enter_context(self.handler.billing(query))
                held.enter_context(self.uploads.holding(query.upload_bytes))
                ciphertexts = receive(chunks, query.spec.ciphertexts_per_query)
            yield from self._answer(query, ciphertexts, context, answered)

    @streaming
    def PredictWhole(
        self, request: pb.PredictWholeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PredictResponse]:
        with contextlib.ExitStack() as held:
            with phase("receive"):
                if not request.HasField("header"):
                    raise BadRequestError("the request must carry a header", field="header")
                query = self.handler.admit(query_header(request.header), current_client())
                answered = held.enter_context(self.handler.billing(query))
                with about("ciphertexts"):
                    ciphertexts = exactly(
                        list(request.ciphertexts), query.spec.ciphertexts_per_query
                    )
            held.enter_context(self.uploads.holding(query.upload_bytes))
            yield from self._answer(query, ciphertexts, context, answered)

    def _answer(
        self,
        query: Query,
        ciphertexts: list[bytes],
        context: grpc.ServicerContext,
        answered: Callable[[], None],
    ) -> Iterator[pb.PredictResponse]:
        """The reply chunks of an admitted query, each sent as soon as it is computed;
        `answered()` as the first goes (the query is then charged)."""
        first_reply = Timer("first_reply")
        blocks = self.handler.evaluate(query, ciphertexts, lambda: not context.is_active())
        layout = ChunkLayout.of(query)
        sending: Timer | None = None
        for chunk in reply_chunks(blocks, layout, query.version.version, context):
            if sending is None:
                first_reply.finish()
                answered()
                sending = Timer("send")
            yield chunk
        if sending is not None:
            sending.finish()


def query_header(header: pb.PredictHeader) -> QueryHeader:
    """What the handler reads of a Predict header."""
    with about("header.scheme"):
        backend = backend_for(header.scheme, header.mode)
    with about("header.model_kind"):
        kind = kind_of(header.model_kind)
    return QueryHeader(
        model_version=header.model_version,
        key_id=header.key_id,
        backend=backend,
        ciphertext_count=header.ciphertext_count,
        input_offset=header.input_offset,
        model_kind=kind,
    )


def receive(chunks: Iterator[pb.CiphertextChunk], expected: int) -> list[bytes]:
    """The ciphertexts of numbered chunks, exactly `expected` of them."""
    ciphertexts: list[bytes] = []
    for index, chunk in enumerate(chunks):
        if chunk.chunk_index != index:
            raise BadRequestError(
                f"chunk {chunk.chunk_index} arrived where {index} was due",
                field="chunk.chunk_index",
            )
        ciphertexts.extend(chunk.ciphertexts)
        if len(ciphertexts) > expected:
            raise BadRequestError(
                f"more than the announced {expected} ciphertexts", field="chunk.ciphertexts"
            )
    with about("chunk.ciphertexts"):
        return exactly(ciphertexts, expected)


def exactly(ciphertexts: list[bytes], expected: int) -> list[bytes]:
    """`ciphertexts`, if there are exactly `expected` of them (else INVALID_ARGUMENT)."""
    if len(ciphertexts) != expected:
        raise BadRequestError(f"received {len(ciphertexts)} ciphertexts, expected {expected}")
    return ciphertexts


@dataclass(frozen=True)
class ChunkLayout:
    """How a query's reply travels: `replies` ciphertexts, `per_chunk` to a chunk (one when
    shards may send them out of item order, so a chunk is always one run of items)."""

    replies: int
    per_chunk: int

    @classmethod
    def of(cls, query: Query) -> ChunkLayout:
        backend, spec = query.backend, query.spec
        replies = -(-spec.items // backend.items_per_reply(spec))
        per_chunk = 1 if backend.shardable else REPLY_CHUNK_BYTES // backend.reply_bytes(spec)
        return cls(replies, max(1, per_chunk))

    @property
    def chunks(self) -> int:
        return -(-self.replies // self.per_chunk)


def reply_chunks(
    blocks: Iterator[ReplyBlock], layout: ChunkLayout, version: str, context: grpc.ServicerContext
) -> Iterator[pb.PredictResponse]:
    """Reply blocks as indexed, checksummed chunks of `layout.per_chunk` blocks, each sent as
    soon as its blocks are computed; stops if the client goes."""
    index, pending = 0, []
    for block in blocks:
        pending.append(block)
        if (
            len(pending) < layout.per_chunk
            and index * layout.per_chunk + len(pending) < layout.replies
        ):
            continue
        if not context.is_active():
            return
        first, count = pending[0].first_item, sum(b.count for b in pending)
        cts = [b.ciphertext for b in pending]
        yield pb.PredictResponse(
            chunk_index=index,
            total_chunks=layout.chunks,
            first_item=first,
            count=count,
            model_version=version,
            ciphertexts=cts,
            checksum=chunk_checksum(index, first, count, version, cts),
        )
        index, pending = index + 1, []
    if index != layout.chunks:
        raise RuntimeError(f"the computation gave {index} reply chunks, {layout.chunks} were due")

"""Shard calls to peers over gRPC (ShardService), with deadlines, cancellation and retries on
the next peer ranked for the shard. A reply stream that breaks part-way resumes on the next
peer from the first block not yet received."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from cryptorec.services.errors import PeerError
from cryptorec.services.evaluator.shards.peers import Peers
from cryptorec.services.evaluator.shards.task import ShardTask
from cryptorec.services.observability.tracing import outgoing_metadata
from cryptorec.services.rpc.convert import mode_enum, scheme_enum
from cryptorec.services.rpc.request_id import REQUEST_ID
from cryptorec.v1 import shard_service_pb2 as pb
from cryptorec.v1 import shard_service_pb2_grpc as pb_grpc
from libcryptorec.he.cancel import StopCheck
from libcryptorec.he.errors import CancelledError

log = logging.getLogger("cryptorec.shards")

# A peer that is gone, restarting, or busy beyond the slot wait: another may serve the shard.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNKNOWN,  # a peer killed mid-stream can end it without a status
    grpc.StatusCode.ABORTED,
}
ATTEMPTS = 3
SHARD_TIMEOUT_SECONDS = 120.0


class RemoteShards:
    """The shards of one query, each computed by the peer ranked first for it."""

    def __init__(self, peers: Peers, task: ShardTask, request_id: str | None) -> None:
        self.peers, self.task = peers, task
        # The request id and the trace context (traceparent) travel with every shard call.
        ids = ((REQUEST_ID, request_id),) if request_id else ()
        self.metadata = ids + outgoing_metadata()
        self.retries = 0
        self.candidates = peers.assign([shard_key(task, s) for s in range(task.shard_count)])

    def _ref(self, shard: int) -> pb.ShardRef:
        t = self.task
        return pb.ShardRef(
            model_version=t.version,
            key_id=t.key_id,
            scheme=scheme_enum(t.backend.scheme),
            mode=mode_enum(t.backend.mode),
            shard=shard,
            shard_count=t.shard_count,
        )

    def _candidates(self, shard: int) -> list[str]:
        ranked = self.candidates[shard][:ATTEMPTS]
        if not ranked:
            raise PeerError("UNAVAILABLE", "no shard peers are known")
        return ranked

    def first(self, shard: int, ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
        request = pb.FirstProductRequest(shard=self._ref(shard), ciphertexts=ciphertexts)
        last: grpc.RpcError | None = None
        for address in self._candidates(shard):
            if should_stop():
                raise CancelledError("the client went away")
            stub = pb_grpc.ShardServiceStub(self.peers.channel(address))
            try:
                reply = stub.FirstProduct(
                    request, timeout=SHARD_TIMEOUT_SECONDS, metadata=self.metadata
                )
                return bytes(reply.partial)
            except grpc.RpcError as exc:
                last = self._failed(exc, address, shard)
        raise _as_peer_error(last)

    def second(self, shard: int, first: bytes, should_stop: StopCheck) -> Iterator[bytes]:
        received = 0
        last: grpc.RpcError | None = None
        for address in self._candidates(shard):
            stub = pb_grpc.ShardServiceStub(self.peers.channel(address))
            request = pb.SecondProductRequest(shard=self._ref(shard), first=first, start=received)
            call = stub.SecondProduct(
                request, timeout=SHARD_TIMEOUT_SECONDS, metadata=self.metadata
            )
            try:
                for message in call:
                    if should_stop():
                        call.cancel()
                        raise CancelledError("the client went away")
                    if message.block != received:
                        raise PeerError(
                            "INTERNAL",
                            f"shard {shard} sent block {message.block} where {received} was due",
                        )
                    received += 1
                    yield bytes(message.reply)
                return
            except grpc.RpcError as exc:
                last = self._failed(exc, address, shard)
            finally:
                call.cancel()  # a no-op once finished; stops the peer if we leave early
        raise _as_peer_error(last)

    def _failed(self, exc: grpc.RpcError, address: str, shard: int) -> grpc.RpcError:
        """`exc` if another peer may succeed (logged, counted); raised as a PeerError if not."""
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        if code not in RETRYABLE:
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise PeerError(code.name, details or code.name) from None
        log.warning("shard %d on %s failed (%s); trying the next peer", shard, address, code.name)
        self.retries += 1
        return exc


def _as_peer_error(last: grpc.RpcError | None) -> PeerError:
    if isinstance(last, grpc.Call):
        return PeerError(last.code().name, f"every peer failed: {last.details()}")
    return PeerError("UNAVAILABLE", "every peer failed")


def shard_key(task: ShardTask, shard: int) -> str:
    """What a shard is assigned by: the same for every router."""
    t = task
    return f"{t.version}|{t.backend.scheme}|{t.backend.mode}|{shard}|{t.shard_count}"

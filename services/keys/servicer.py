"""KeyService over gRPC: converts messages and streams, then calls the handler."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from cryptorec.services.errors import BadRequestError, about
from cryptorec.services.keys.handler import KeyHandler, KeyUpload
from cryptorec.services.keys.receive import receive_key_bytes
from cryptorec.services.rpc.admission import (
    UploadBudget,
    UploadShare,
    current_address,
    pause_upload,
)
from cryptorec.services.rpc.auth import current_client
from cryptorec.services.rpc.convert import backend_for, mode_enum, scheme_enum
from cryptorec.services.rpc.errors import unary
from cryptorec.services.rpc.streams import header_then_chunks
from cryptorec.services.store.base import KeyInfo
from cryptorec.v1 import key_service_pb2 as pb
from cryptorec.v1 import key_service_pb2_grpc as pb_grpc


class KeyServicer(pb_grpc.KeyServiceServicer):
    """Key sets: registered (streamed or whole), described, listed and deleted."""

    def __init__(self, handler: KeyHandler, budget: UploadBudget) -> None:
        self.handler = handler
        # A registration holds three bytes per declared byte while received and checked: the
        # buffer, one blob's bytes copy and the keys SEAL loads from it (a CKKS accurate key
        # set of 105 MB, 88 MB of it rotation keys, peaks near 2.7 times its size).
        self.uploads = UploadShare(budget, per_byte=3, what="this key set")

    @unary
    def RegisterKeys(
        self, request_iterator: Iterator[pb.RegisterKeysRequest], context: grpc.ServicerContext
    ) -> pb.RegisterKeysResponse:
        header, chunks = header_then_chunks(request_iterator)
        return self._register(header, chunks)

    @unary
    def RegisterKeysWhole(
        self, request: pb.RegisterKeysWholeRequest, context: grpc.ServicerContext
    ) -> pb.RegisterKeysResponse:
        if not request.HasField("header"):
            raise BadRequestError("the request must carry a header", field="header")
        return self._register(request.header, iter([request.keys]))

    def _register(self, header: pb.KeyHeader, chunks: Iterator[bytes]) -> pb.RegisterKeysResponse:
        """Check the header (before any key byte is read), collect the bytes, register."""
        pause_upload()
        with about("header.scheme"):
            backend = backend_for(header.scheme, header.mode)
        upload = KeyUpload(
            backend=backend,
            parameter_set=header.parameter_set,
            rotation_steps=tuple(header.rotation_steps),
            blobs=tuple((b.name, b.size, b.sha256) for b in header.blobs),
        )
        caller = current_client()
        keys = self.handler.check(upload, caller)
        with self.uploads.holding(upload.total):
            with about("chunk"):
                data = receive_key_bytes(chunks, upload)
            record = self.handler.register(
                upload, keys, memoryview(data), caller, current_address()
            )
        return pb.RegisterKeysResponse(key_id=record.key_id, expires_unix=int(record.expires_unix))

    @unary
    def GetKeyInfo(
        self, request: pb.GetKeyInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetKeyInfoResponse:
        with about("key_id"):
            return key_info_message(self.handler.info(request.key_id, current_client()))

    @unary
    def DeleteKeys(
        self, request: pb.DeleteKeysRequest, context: grpc.ServicerContext
    ) -> pb.DeleteKeysResponse:
        with about("key_id"):
            self.handler.delete(request.key_id, current_client())
        return pb.DeleteKeysResponse()

    @unary
    def ListKeys(
        self, request: pb.ListKeysRequest, context: grpc.ServicerContext
    ) -> pb.ListKeysResponse:
        keys = self.handler.listing(current_client())
        return pb.ListKeysResponse(keys=[key_info_message(k) for k in keys])


def key_info_message(info: KeyInfo) -> pb.GetKeyInfoResponse:
    """The message describing a registered key set."""
    return pb.GetKeyInfoResponse(
        key_id=info.key_id,
        scheme=scheme_enum(info.keys.scheme),
        mode=mode_enum(info.keys.mode),
        parameter_set=info.keys.parameter_set,
        size=info.size,
        expires_unix=int(info.expires_unix),
    )

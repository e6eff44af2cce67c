"""KeyService: clients register public and evaluation keys once; the id is their content hash.

Checks happen in order of cost, each before the next: the header (enums, an allow-listed
parameter set, only public blob names, plausible rotation steps, declared sizes under the
(scheme, mode)'s cap), then the streamed bytes (exact sizes, sha256 per blob), then the keys'
structure and loading them under the parameter set (in a work slot). Only then is anything
stored. Secret keys never arrive: their blob names are refused from the header.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import grpc

from cryptorec.v1 import key_service_pb2 as pb
from cryptorec.v1 import key_service_pb2_grpc as pb_grpc
from libcryptorec.he.schemes import (
    KEY_BLOBS,
    PARAMETER_SETS,
    check_key_header,
    key_set_cap,
    validate_keys,
)
from services.rpc.admission import Admission, current_upload
from services.rpc.errors import RequestError, invalid, unary
from services.rpc.protocol import mode_enum, mode_name, scheme_enum, scheme_name
from services.store.base import Store, shown

log = logging.getLogger("cryptorec.keys")


class KeyServicer(pb_grpc.KeyServiceServicer):
    """Stateless: every key set lives in the store."""

    def __init__(self, store: Store, ttl_seconds: int, admission: Admission) -> None:
        self.store, self.ttl, self.admission = store, ttl_seconds, admission

    @unary
    def RegisterKeys(
        self, request_iterator: Iterator[pb.RegisterKeysRequest], context: grpc.ServicerContext
    ) -> pb.RegisterKeysResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid("the first message must be a KeyHeader")
        header = first.header
        scheme, mode = scheme_name(header.scheme), mode_name(header.mode)
        parameter_set = PARAMETER_SETS.get((scheme, mode))
        if header.parameter_set != parameter_set:
            raise invalid(
                f"parameter set {shown(header.parameter_set)} is not offered for {scheme}/{mode}"
            )
        allowed = KEY_BLOBS[(scheme, mode)]
        names = [b.name for b in header.blobs]
        if sorted(names) != sorted(allowed):
            raise invalid(f"{scheme}/{mode} registers exactly {list(allowed)} (public keys only)")
        if any(b.size < 0 for b in header.blobs):
            raise invalid("blob sizes cannot be negative")
        check_key_header(scheme, mode, tuple(header.rotation_steps))  # -> INVALID_ARGUMENT
        total, cap = sum(b.size for b in header.blobs), key_set_cap(scheme, mode)
        if total > cap:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"key set of {total} bytes exceeds the {cap}-byte cap for {scheme}/{mode}",
            )
        upload = current_upload()
        if upload is not None:
            upload.expect(total)
        data = bytearray()
        for message in request_iterator:
            if message.WhichOneof("part") != "chunk":
                raise invalid("only chunks may follow the header")
            data += message.chunk
            if len(data) > total:
                raise invalid("more key bytes than the header declared")
        if len(data) != total:
            raise invalid(f"received {len(data)} key bytes, the header declared {total}")
        blobs, offset = {}, 0
        for b in header.blobs:
            blob = bytes(data[offset : offset + b.size])
            offset += b.size
            if hashlib.sha256(blob).digest() != b.sha256:
                raise invalid(f"blob {b.name}: sha256 mismatch")
            blobs[b.name] = blob
        meta = {
            "scheme": scheme,
            "mode": mode,
            "parameter_set": parameter_set,
            "rotation_steps": list(header.rotation_steps),
            "blobs": [[b.name, b.size] for b in header.blobs],
        }
        with self.admission.work():  # loading keys into SEAL is the heavy part
            validate_keys(meta, blobs)  # InvalidKeyError -> INVALID_ARGUMENT
        record = self.store.put_key(meta, bytes(data), self.ttl)
        log.info("registered key %s (%s/%s, %d bytes)", record.key_id, scheme, mode, total)
        return pb.RegisterKeysResponse(key_id=record.key_id, expires_unix=int(record.expires_unix))

    @unary
    def GetKeyInfo(
        self, request: pb.GetKeyInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetKeyInfoResponse:
        info = self.store.key_info(request.key_id)
        return pb.GetKeyInfoResponse(
            key_id=info.key_id,
            scheme=scheme_enum(info.meta["scheme"]),
            mode=mode_enum(info.meta["mode"]),
            parameter_set=info.meta["parameter_set"],
            size=info.size,
            expires_unix=int(info.expires_unix),
        )

    @unary
    def DeleteKeys(
        self, request: pb.DeleteKeysRequest, context: grpc.ServicerContext
    ) -> pb.DeleteKeysResponse:
        self.store.key_info(request.key_id)  # NOT_FOUND if unknown
        self.store.delete_key(request.key_id)
        return pb.DeleteKeysResponse()


def split_blobs(meta: dict[str, object], data: bytes) -> dict[str, bytes]:
    """The named blobs of a stored key set (meta["blobs"] lists [name, size] in order)."""
    blobs, offset = {}, 0
    for name, size in meta["blobs"]:  # type: ignore[attr-defined]
        blobs[str(name)] = data[offset : offset + int(size)]
        offset += int(size)
    return blobs

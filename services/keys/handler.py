"""The key service's work, without gRPC: checking a registration and storing it, describing
and deleting key sets.

Checks happen in order of cost, each before the next: the header (an offered scheme and mode,
its allow-listed parameter set, only its public blob names, plausible rotation steps, sizes
under the backend's cap), then the streamed bytes (exact sizes, sha256 per blob), then the
keys' structure and loading them under the parameter set (in a work slot). Only then is
anything stored. Secret keys never arrive: their blob names are refused from the header.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from cryptorec.services.errors import BadRequestError, TooLargeError
from cryptorec.services.store.base import KeyInfo, KeyRecord, Store, shown
from cryptorec.services.work import WorkSlots

from libcryptorec.he.backend import Backend, KeySet

log = logging.getLogger("cryptorec.keys")


@dataclass(frozen=True)
class KeyUpload:
    """A registration's header: what the keys are for and the blobs that will follow, in
    order, as (name, size, sha256)."""

    backend: Backend
    parameter_set: str
    rotation_steps: tuple[int, ...]
    blobs: tuple[tuple[str, int, bytes], ...]

    @property
    def total(self) -> int:
        return sum(size for _, size, _ in self.blobs)


class KeyHandler:
    """Stateless: every key set lives in the store."""

    def __init__(self, store: Store, ttl_seconds: int, work: WorkSlots) -> None:
        self.store, self.ttl, self.work = store, ttl_seconds, work

    def check(self, upload: KeyUpload) -> KeySet:
        """Everything the header alone shows (before any key byte is read); the key set the
        bytes must then fill."""
        backend = upload.backend
        name = f"{backend.scheme}/{backend.mode}"
        if upload.parameter_set != backend.parameter_set:
            raise BadRequestError(
                f"parameter set {shown(upload.parameter_set)} is not offered for {name}"
            )
        names = [blob_name for blob_name, _, _ in upload.blobs]
        if sorted(names) != sorted(backend.key_blob_names):
            raise BadRequestError(
                f"{name} registers exactly {list(backend.key_blob_names)} (public keys only)"
            )
        if any(size < 0 for _, size, _ in upload.blobs):
            raise BadRequestError("blob sizes cannot be negative")
        backend.check_key_header(upload.rotation_steps)  # InvalidKeyError: INVALID_ARGUMENT
        if upload.total > backend.key_set_cap():
            raise TooLargeError(
                f"key set of {upload.total} bytes exceeds the {backend.key_set_cap()}-byte cap "
                f"for {name}"
            )
        return KeySet(
            scheme=backend.scheme,
            mode=backend.mode,
            parameter_set=backend.parameter_set,
            rotation_steps=upload.rotation_steps,
            blobs=tuple((blob_name, size) for blob_name, size, _ in upload.blobs),
        )

    def register(self, upload: KeyUpload, keys: KeySet, data: bytes) -> KeyRecord:
        """Check the streamed bytes and the keys themselves, then store them."""
        if len(data) != upload.total:
            raise BadRequestError(
                f"received {len(data)} key bytes, the header declared {upload.total}"
            )
        blobs = keys.split(data)
        for blob_name, _, digest in upload.blobs:
            if hashlib.sha256(blobs[blob_name]).digest() != digest:
                raise BadRequestError(f"blob {blob_name}: sha256 mismatch")
        with self.work.hold():  # loading keys into SEAL is the heavy part
            upload.backend.validate_keys(keys, blobs)  # InvalidKeyError: INVALID_ARGUMENT
        record = self.store.put_key(keys, data, self.ttl)
        log.info(
            "registered key %s (%s/%s, %d bytes)", record.key_id, keys.scheme, keys.mode, len(data)
        )
        return record

    def info(self, key_id: str) -> KeyInfo:
        return self.store.key_info(key_id)

    def delete(self, key_id: str) -> None:
        self.store.key_info(key_id)  # NOT_FOUND if unknown
        self.store.delete_key(key_id)

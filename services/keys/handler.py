"""The key service's work, without gRPC: checking a registration and storing it, describing
and deleting key sets.

Checks happen in order of cost, each before the next: the header (an offered scheme and mode,
its allow-listed parameter set, only its public blob names, plausible rotation steps, each
blob's size under what the parameter set allows), then each blob's first bytes as they
arrive (services/keys/receive.py), then the streamed bytes (exact sizes, sha256 per blob),
then the keys' structure and loading them under the parameter set (in a work slot). Only then
is anything stored. Secret keys never arrive: their blob names are refused from the header.

A key set is stored in one canonical form (rotation steps ascending, blobs in the order the
backend names them), so the same keys have one key id however a client orders its header.
Without authentication, new key sets (attempts included) are limited per client address and
rolling day.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass

from cryptorec.services.errors import (
    BadRequestError,
    PermissionDeniedError,
    PreconditionError,
    TooLargeError,
)
from cryptorec.services.observability.current import note
from cryptorec.services.store.base import (
    ClientRecord,
    KeyInfo,
    KeyRecord,
    NotFoundError,
    QuotaExceededError,
    Store,
    StoreFullError,
    key_id_for,
    shown,
)
from cryptorec.services.work import WorkSlots
from libcryptorec.he.backend import Backend, Blob, KeySet

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

    def offsets(self) -> list[tuple[str, int, int]]:
        """(name, start, size) of each blob in the bytes as they arrive."""
        out, at = [], 0
        for name, size, _ in self.blobs:
            out.append((name, at, size))
            at += size
        return out


# New key sets one client address may register per rolling day without authentication.
DEFAULT_REGISTRATIONS_PER_ADDRESS = 100


class KeyHandler:
    """Stateless: every key set lives in the store."""

    def __init__(
        self,
        store: Store,
        ttl_seconds: int,
        work: WorkSlots,
        registrations_per_address: int = DEFAULT_REGISTRATIONS_PER_ADDRESS,
        model_reserve: int = 0,
    ) -> None:
        """`model_reserve`: bytes of the store no key set may take, kept for model versions
        (the trainer's next publication must always fit)."""
        self.store, self.ttl, self.work = store, ttl_seconds, work
        self.registrations_per_address = registrations_per_address
        self.model_reserve = model_reserve

    def check(self, upload: KeyUpload, caller: ClientRecord | None = None) -> KeySet:
        """Everything the header alone shows (before any key byte is read), the caller's
        quotas included; the key set the bytes must then fill."""
        backend = upload.backend
        note(scheme=backend.scheme, mode=backend.mode)
        name = backend.id
        if upload.parameter_set != backend.parameter_set:
            raise BadRequestError(
                f"parameter set {shown(upload.parameter_set)} is not offered for {name}",
                field="header.parameter_set",
            )
        names = [blob_name for blob_name, _, _ in upload.blobs]
        if sorted(names) != sorted(backend.key_blob_names):
            raise BadRequestError(
                f"{name} registers exactly {list(backend.key_blob_names)} (public keys only)",
                field="header.blobs",
            )
        if any(size < 0 for _, size, _ in upload.blobs):
            raise BadRequestError("blob sizes cannot be negative", field="header.blobs")
        backend.check_key_header(upload.rotation_steps)  # InvalidKeyError: INVALID_ARGUMENT
        if upload.total > backend.key_set_cap():
            raise TooLargeError(
                f"key set of {upload.total} bytes exceeds the {backend.key_set_cap()}-byte cap "
                f"for {name}"
            )
        caps = backend.blob_caps(upload.rotation_steps)
        for blob_name, size, _ in upload.blobs:
            if size > caps[blob_name]:
                raise TooLargeError(
                    f"blob {blob_name} of {size} bytes exceeds the {caps[blob_name]} bytes "
                    f"{name} allows for {len(upload.rotation_steps)} rotation steps"
                )
        if caller is not None:
            held, q = self.store.usage(caller.name), caller.quotas
            by_count = held.key_sets >= q.max_key_sets
            if by_count or held.key_bytes + upload.total > q.max_key_bytes:
                raise QuotaExceededError(
                    f"client {caller.name} holds {held.key_sets} key sets ({held.key_bytes} "
                    f"bytes) of its {q.max_key_sets} ({q.max_key_bytes} bytes): delete one "
                    "(DeleteKeys) or wait for one to expire",
                    subject=f"client:{caller.name}",
                    quota="max_key_sets" if by_count else "max_key_bytes",
                )
        sizes = {blob_name: size for blob_name, size, _ in upload.blobs}
        return KeySet(
            scheme=backend.scheme,
            mode=backend.mode,
            parameter_set=backend.parameter_set,
            rotation_steps=tuple(sorted(upload.rotation_steps)),
            blobs=tuple((blob_name, sizes[blob_name]) for blob_name in backend.key_blob_names),
        )

    def register(
        self,
        upload: KeyUpload,
        keys: KeySet,
        data: Blob,
        caller: ClientRecord | None = None,
        address: str = "",
    ) -> KeyRecord:
        """Check the streamed bytes (in the upload's order) and the keys themselves, then
        store them in the canonical form of `keys` (`check`'s), owned by `caller` (its quotas
        claimed atomically first); without a caller, a new key set counts against `address`'s
        registrations of the day."""
        if len(data) != upload.total:
            raise BadRequestError(
                f"received {len(data)} key bytes, the header declared {upload.total}"
            )
        view = memoryview(data)
        blobs = {name: view[start : start + size] for name, start, size in upload.offsets()}
        for blob_name, _, digest in upload.blobs:
            if hashlib.sha256(blobs[blob_name]).digest() != digest:
                raise BadRequestError(f"blob {blob_name}: sha256 mismatch", field="header.blobs")
        received = [name for name, _, _ in upload.blobs]
        canonical = (
            view
            if received == [n for n, _ in keys.blobs]
            else b"".join(blobs[n] for n, _ in keys.blobs)
        )
        key_id = key_id_for(keys, canonical)
        new = not self._stored(key_id)
        if new:
            self._check_room(len(canonical))
        if caller is None and address and new:
            self._count_registration(address)  # before the costly checks: attempts count
        with self.work.hold():  # loading keys into SEAL is the heavy part
            upload.backend.validate_keys(keys, blobs)  # InvalidKeyError: INVALID_ARGUMENT
        if caller is not None:
            expires = time.time() + self.ttl
            self.store.claim_key(caller.name, key_id, len(canonical), expires, caller.quotas)
        record = self.store.put_key(keys, canonical, self.ttl)
        log.info(
            "registered key %s (%s/%s, %d bytes)", record.key_id, keys.scheme, keys.mode, len(data)
        )
        return record

    def _check_room(self, size: int) -> None:
        """StoreFullError unless a new key set of `size` bytes leaves the model reserve free
        (without this, key sets could fill the store and block the next model version)."""
        space = self.store.space()
        # Twice the size: Redis holds the value and, while it arrives, the request carrying it.
        if space is None or space.used + 2 * size <= space.limit - self.model_reserve:
            return
        free = max(0, space.limit - self.model_reserve - space.used)
        raise StoreFullError(
            f"the store keeps {self.model_reserve / 1e6:.0f} MB for model versions and has "
            f"{free / 1e6:.1f} MB left for key sets; this one takes {size / 1e6:.1f} MB"
        )

    def _stored(self, key_id: str) -> bool:
        try:
            self.store.key_info(key_id)
            return True
        except NotFoundError:
            return False

    def _count_registration(self, address: str) -> None:
        """Count one new key set against `address` (no authentication), in the store's
        atomic rolling-day counters, shared by every replica; QuotaExceededError beyond."""
        counter = "addr-" + hashlib.sha256(address.encode()).hexdigest()[:24]
        try:
            self.store.spend_query(counter, self.registrations_per_address)
        except QuotaExceededError as exc:
            raise QuotaExceededError(
                f"this address has registered {self.registrations_per_address} new key sets in "
                "the last 24 hours, the most allowed without authentication",
                exc.retry_after,
                subject="address",
                quota="registrations_per_address",
            ) from None

    def info(self, key_id: str, caller: ClientRecord | None = None) -> KeyInfo:
        """A key set's metadata: NOT_FOUND if unknown, PERMISSION_DENIED if not the caller's."""
        info = self.store.key_info(key_id)
        self._check_owner(key_id, caller)
        return info

    def delete(self, key_id: str, caller: ClientRecord | None = None) -> None:
        """Drop the caller's ownership; the key set goes once nobody owns it (at once without
        authentication)."""
        self.info(key_id, caller)
        if caller is None or self.store.release_key(caller.name, key_id) == 0:
            self.store.delete_key(key_id)

    def listing(self, caller: ClientRecord | None) -> list[KeyInfo]:
        """The caller's key sets (known only with authentication on)."""
        if caller is None:
            raise PreconditionError("key sets have owners only with authentication on (--auth)")
        out = []
        for key_id in self.store.client_keys(caller.name):
            with contextlib.suppress(NotFoundError):  # expired meanwhile
                out.append(self.store.key_info(key_id))
        return out

    def _check_owner(self, key_id: str, caller: ClientRecord | None) -> None:
        if caller is not None and not self.store.owns_key(caller.name, key_id):
            raise PermissionDeniedError(f"key set {key_id} belongs to another client")

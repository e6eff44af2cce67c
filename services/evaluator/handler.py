"""The evaluator's work, without gRPC: admitting a query (everything checkable before its
ciphertexts arrive) and computing it.

Stateless: the model version is resolved per request (the current pointer, or the version the
client names) and every request is answered wholly from that version, so a publication during
a stream never mixes versions. Models, their encodings and clients' bound keys share one cache
bounded by bytes. The work (encoding, loading keys, evaluating) holds a work slot, taken only
once the request is complete and valid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptorec.services.cache import ByteBudgetCache
from cryptorec.services.errors import BadRequestError, PermissionDeniedError
from cryptorec.services.observability.current import note, phase
from cryptorec.services.store.base import ClientRecord, KeyInfo, Store, check_key_id
from cryptorec.services.versions import ModelVersion, Versions
from cryptorec.services.work import WorkSlots
from libcryptorec.he import registry
from libcryptorec.he.backend import Backend, Bound, PreparedModel, SchemeSpec, item_ranges
from libcryptorec.he.cancel import StopCheck

log = logging.getLogger("cryptorec.evaluator")


@dataclass(frozen=True)
class QueryHeader:
    """What a query announces before its ciphertexts: the model version ("" = current), the
    key set, the backend and the number of ciphertexts."""

    model_version: str
    key_id: str
    backend: Backend
    ciphertext_count: int


@dataclass(frozen=True)
class Query:
    """An admitted query: the version, spec and key set it will be computed with."""

    version: ModelVersion
    spec: SchemeSpec
    backend: Backend
    key: KeyInfo

    @property
    def upload_bytes(self) -> int:
        """The most bytes its ciphertexts may take."""
        return self.backend.query_bytes(self.spec)


@dataclass(frozen=True)
class Reply:
    """The reply ciphertexts of a query and the catalogue items each covers."""

    version: str
    replies: list[bytes]
    ranges: list[tuple[int, int]]


class EvaluatorHandler:
    def __init__(
        self,
        store: Store,
        work: WorkSlots,
        cache_bytes: int,
        paillier_workers: int = 1,
        on_cache_lookup: Callable[[tuple[str, ...], bool], None] | None = None,
    ) -> None:
        """`cache_bytes`: memory for models, their encodings and clients' loaded keys, shared
        by all three; `paillier_workers`: processes per Paillier query; `on_cache_lookup(key,
        hit)` hears of every cache lookup."""
        self.store, self.work, self.paillier_workers = store, work, paillier_workers
        self.cache: ByteBudgetCache[tuple[str, ...], Any] = ByteBudgetCache(
            cache_bytes, lambda value: int(value.nbytes), on_lookup=on_cache_lookup
        )
        self.versions = Versions(store, self.cache)

    def admit(self, header: QueryHeader, caller: ClientRecord | None = None) -> Query:
        """Everything checkable before the ciphertexts arrive (BadRequestError, NotFoundError,
        InvalidIdError otherwise): the key id's syntax, the version, the ciphertext count, the
        key set's existence and kind; with a `caller`, that it owns the key set
        (PermissionDeniedError) and has budget left for one more query (QuotaExceededError,
        counted now across every replica). Reads only the key set's metadata."""
        key_id = check_key_id(header.key_id)
        backend = header.backend
        version = self.versions.load(self.versions.resolve(header.model_version))
        try:
            spec = registry.find_spec(version.specs, backend.scheme, backend.mode)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
        name = f"{backend.scheme}/{backend.mode}"
        if header.ciphertext_count != spec.ciphertexts_per_query:
            raise BadRequestError(
                f"{name} on model {version.version} takes {spec.ciphertexts_per_query} "
                f"ciphertexts, the header announces {header.ciphertext_count}"
            )
        key = self.store.key_info(key_id)
        if (key.keys.scheme, key.keys.mode) != (backend.scheme, backend.mode):
            raise BadRequestError(
                f"key {key_id} is for {key.keys.scheme}/{key.keys.mode}, the request is {name}"
            )
        if caller is not None:
            if not self.store.owns_key(caller.name, key_id):
                raise PermissionDeniedError(f"key set {key_id} belongs to another client")
            self.store.spend_query(caller.name, caller.quotas.queries_per_day)
        note(scheme=backend.scheme, mode=backend.mode, model_version=version.version)
        return Query(version, spec, backend, key)

    def evaluate(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Reply | None:
        """Compute the query in a work slot (RefusedError at once if none is free); None if
        the client went away before the work began."""
        spec, backend, version = query.spec, query.backend, query.version.version
        with self.work.hold():
            prepared: PreparedModel = self.cache.get(
                ("prepared", version, spec.scheme, spec.mode),
                lambda: backend.prepare(query.version.packed, spec),
            )
            evaluator: Bound = self.cache.get(
                ("bound", query.key.key_id, version, spec.scheme, spec.mode),
                lambda: self._bind(backend, prepared, query.key.key_id),
                expected_size=backend.bound_bytes(spec, query.key.size),
            )
            if should_stop():
                return None
            with phase("evaluate"):
                replies = evaluator.evaluate(ciphertexts, should_stop)
        ranges = item_ranges(spec.items, backend.items_per_reply(spec), len(replies))
        return Reply(version, replies, ranges)

    def _bind(self, backend: Backend, prepared: PreparedModel, key_id: str) -> Bound:
        record = self.store.get_key(key_id)
        keys, blobs = record.keys, record.keys.split(record.blob)
        del record  # the blobs are copies: let the whole go before the keys are loaded
        return backend.bind(prepared, keys, blobs, workers=self.paillier_workers)

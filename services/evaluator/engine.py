"""What the evaluator computes with: model versions, their encodings per backend (and per
shard), key sets bound to them and the backends' combining contexts, all in one memory
budget (ByteBudgetCache). Public so that every way of computing a query asks it the same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptorec.services.cache import ByteBudgetCache
from cryptorec.services.errors import BadRequestError, PreconditionError
from cryptorec.services.evaluator.shards.task import ShardTask
from cryptorec.services.store.base import KeyInfo, Store, check_key_id, check_version_id
from cryptorec.services.versions import ModelVersion, Versions
from libcryptorec.he import registry
from libcryptorec.he.backend import EMPTY, Backend, Bound, PreparedModel, SchemeSpec, ShardBound


@dataclass
class _Sized:
    """A cache entry of roughly known size: a parameter set's context (NTT tables)."""

    value: Any
    nbytes: int = 64 << 20


class Engine:
    """Encodings and bound evaluators, cached: only what this process computes is encoded."""

    def __init__(
        self,
        store: Store,
        cache_bytes: int,
        options: Mapping[str, Any] = EMPTY,
        on_cache_lookup: Callable[[tuple[Any, ...], bool], None] | None = None,
    ) -> None:
        """`cache_bytes`: memory for models, their encodings and clients' loaded keys, shared
        by all three; `options`: the backends' own settings (Backend.options), handed to
        `bind`; `on_cache_lookup(key, hit)` hears of every cache lookup."""
        self.store, self.options = store, options
        self.cache: ByteBudgetCache[tuple[Any, ...], Any] = ByteBudgetCache(
            cache_bytes, lambda value: int(value.nbytes), on_lookup=on_cache_lookup
        )
        self.versions = Versions(store, self.cache)

    def key_for(self, key_id: str, backend: Backend) -> KeyInfo:
        """The key set `key_id`'s metadata (NotFoundError; BadRequestError if it is for
        another backend)."""
        key = self.store.key_info(key_id)
        if key.keys.backend_id != backend.id:
            raise BadRequestError(
                f"key {key_id} is for {key.keys.backend_id}, the request is {backend.id}"
            )
        return key

    def prepared(
        self, version: ModelVersion, spec: SchemeSpec, backend: Backend, run: range | None
    ) -> PreparedModel:
        """The encoding of the item blocks `run` of `version` (None: the whole model)."""
        prepared: PreparedModel = self.cache.get(
            ("prepared", *_encoding(version, spec, run)),
            lambda: backend.prepare(version.packed, spec, run),
        )
        return prepared

    def bound(
        self,
        version: ModelVersion,
        spec: SchemeSpec,
        backend: Backend,
        key: KeyInfo,
        run: range | None,
    ) -> Bound:
        """The encoding of `run` (None: the whole model) with key set `key` bound to it."""
        prepared = self.prepared(version, spec, backend, run)
        bound: Bound = self.cache.get(
            ("bound", key.key_id, *_encoding(version, spec, run)),
            lambda: self._bind(backend, prepared, key.key_id),
            expected_size=backend.bound_bytes(spec, key.size),
        )
        return bound

    def shard_bound(self, task: ShardTask) -> ShardBound:
        """The evaluator of one shard for one key set (NotFoundError, BadRequestError,
        PreconditionError if the version is split otherwise than the caller thinks)."""
        version = self.versions.load(check_version_id(task.version))
        backend = task.backend
        if not backend.shardable:
            raise BadRequestError(f"{backend.id} is not evaluated by shards")
        spec = spec_of(version, backend)
        runs = version.shard_runs(spec)
        if task.shard_count != len(runs):
            raise PreconditionError(
                f"model {version.version} has {len(runs)} shards for {backend.id}, the caller "
                f"counts {task.shard_count}"
            )
        if not 0 <= task.shard < len(runs):
            raise BadRequestError(f"no shard {task.shard} of {len(runs)}")
        key = self.key_for(check_key_id(task.key_id), backend)
        bound = self.bound(version, spec, backend, key, runs[task.shard])
        assert isinstance(bound, ShardBound)
        return bound

    def combine(self, backend: Backend, partials: list[bytes]) -> bytes:
        """The sum of the shards' partial first products (backend.combine, cached context)."""
        return backend.combine(partials, self.context(backend))

    def context(self, backend: Backend) -> Any:
        """The backend's combining context (cached: NTT tables take a while)."""
        context = self.cache.get(("context", backend.id), lambda: _Sized(backend.context()))
        return context.value

    def warm(self, version_id: str, backends: Sequence[Backend], with_peers: bool) -> list[str]:
        """Load model `version_id` and encode it for each of `backends` it offers (every
        shard, and the shards' combining context), so that its first query pays for neither.
        `with_peers`: sharded versions go to peers, each encoding its own on first call, so
        this process encodes only what it computes whole. The "scheme/mode" names done."""
        version = self.versions.load(check_version_id(version_id))
        offered = {s.backend_id for s in version.specs}
        done = []
        for backend in backends:
            if backend.id not in offered:
                continue
            spec = spec_of(version, backend)
            runs: list[range | None] = (
                list(version.shard_runs(spec)) if backend.shardable else [None]
            )
            if len(runs) == 1 or not with_peers:  # else peers compute (and encode) the shards
                for run in runs:
                    self.prepared(version, spec, backend, run)
            if backend.shardable:
                self.context(backend)
            done.append(str(backend.id))
        return done

    def _bind(self, backend: Backend, prepared: PreparedModel, key_id: str) -> Bound:
        record = self.store.get_key(key_id)
        keys, blobs = record.keys, record.keys.split(record.blob)
        del record  # the blobs are copies: let the whole go before the keys are loaded
        return backend.bind(prepared, keys, blobs, self.options)


def _encoding(version: ModelVersion, spec: SchemeSpec, run: range | None) -> tuple[Any, ...]:
    """What names one encoding in the cache: the version, the backend, the item blocks."""
    where = (run.start, run.stop) if run is not None else ()
    return (version.version, spec.backend_id, *where)


def spec_of(version: ModelVersion, backend: Backend) -> SchemeSpec:
    """`backend`'s public parameters for `version` (BadRequestError if it does not offer it)."""
    try:
        return registry.find_spec(version.specs, backend.scheme, backend.mode)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None

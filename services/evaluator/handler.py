"""The evaluator's work, without gRPC: admitting a query (everything checkable before its
ciphertexts arrive) and computing it.

Stateless: the model version is resolved per request (the current pointer, or the version the
client names) and every request is answered wholly from that version, so a publication during
a stream never mixes versions. Models, their encodings and clients' bound keys share one cache
bounded by bytes. The work (encoding, loading keys, evaluating) holds a work slot, taken only
once the request is complete and valid.

Fast mode on SEAL is computed by item shards (services/evaluator/scatter.py): with peers
(`--shard-peers`), the evaluator that receives a query of a version published in several
shards routes each shard to the peer assigned to it (services/evaluator/peers.py) and
computes none itself unless it is that peer; a version of one shard, or an evaluator without
peers, computes every shard where the query lands.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptorec.services.cache import ByteBudgetCache
from cryptorec.services.errors import (
    BadRequestError,
    PermissionDeniedError,
    PreconditionError,
    about,
)
from cryptorec.services.evaluator.peers import Peers
from cryptorec.services.evaluator.remote_shards import RemoteShards
from cryptorec.services.evaluator.scatter import ReplyBlock, merged, scatter_gather
from cryptorec.services.observability.current import Timer, note, request_id
from cryptorec.services.store.base import (
    ClientRecord,
    KeyInfo,
    Store,
    StoreError,
    budget_spent,
    check_key_id,
    check_version_id,
)
from cryptorec.services.versions import ModelVersion, Versions
from cryptorec.services.work import WorkSlots
from libcryptorec.he import registry
from libcryptorec.he.backend import EMPTY, Backend, Bound, PreparedModel, SchemeSpec, ShardBound
from libcryptorec.he.cancel import StopCheck
from libcryptorec.model import STARS, ModelKind

log = logging.getLogger("cryptorec.evaluator")


@dataclass(frozen=True)
class QueryHeader:
    """What a query announces before its ciphertexts: the model version ("" = current), the
    key set, the backend, the number of ciphertexts, the input offset the client applied and
    the model kind it read (None: a client older than kinds)."""

    model_version: str
    key_id: str
    backend: Backend
    ciphertext_count: int
    input_offset: float = 0.0
    model_kind: ModelKind | None = None


class Bill:
    """What one query costs its client's budget. Nothing until its computation starts, once a
    work slot is held (`spend`: one query, counted atomically across replicas, so a query
    refused for overload costs nothing), and nothing in the end unless it is answered
    (`answered`, as its first reply chunk goes; `close` refunds it otherwise)."""

    def __init__(self, store: Store, client: ClientRecord) -> None:
        self.store, self.client = store, client
        self._receipt: str | None = None
        self._answered = False

    def spend(self) -> None:
        """Count the query (QuotaExceededError if the budget is spent)."""
        if self._receipt is None:
            self._receipt = self.store.spend_query(
                self.client.name, self.client.quotas.queries_per_day
            )

    def answered(self) -> None:
        self._answered = True

    def close(self) -> None:
        """Refund the query if it was counted and not answered."""
        if self._receipt is None or self._answered:
            return
        try:
            self.store.refund_query(self.client.name, self._receipt)
        except StoreError as exc:  # the store is down: the client pays for this one
            log.warning("could not refund an unanswered query of %s: %s", self.client.name, exc)
        self._receipt = None


@dataclass(frozen=True)
class Query:
    """An admitted query: the version, spec and key set it will be computed with, and its
    bill to the caller's budget (None without authentication)."""

    version: ModelVersion
    spec: SchemeSpec
    backend: Backend
    key: KeyInfo
    bill: Bill | None = None

    @property
    def upload_bytes(self) -> int:
        """The most bytes its ciphertexts may take."""
        return self.backend.query_bytes(self.spec)


@dataclass(frozen=True)
class ShardTask:
    """One shard of an admitted query, as a peer is asked for it (ShardService)."""

    version: str
    key_id: str
    backend: Backend
    shard: int
    shard_count: int


# How long a shard call waits for a work slot: the router admitted the query already, so
# waiting briefly beats failing the whole query; beyond it the router tries another peer.
SHARD_SLOT_WAIT_SECONDS = 30.0


class EvaluatorHandler:
    def __init__(
        self,
        store: Store,
        work: WorkSlots,
        cache_bytes: int,
        options: Mapping[str, Any] = EMPTY,
        on_cache_lookup: Callable[[tuple[Any, ...], bool], None] | None = None,
        peers: Peers | None = None,
    ) -> None:
        """`cache_bytes`: memory for models, their encodings and clients' loaded keys, shared
        by all three; `options`: the backends' own settings (Backend.options); `on_cache_lookup(key,
        hit)` hears of every cache lookup; `peers`: the evaluators that compute item shards
        (None: every shard is computed here)."""
        self.store, self.work, self.options = store, work, options
        self.peers = peers
        self.cache: ByteBudgetCache[tuple[Any, ...], Any] = ByteBudgetCache(
            cache_bytes, lambda value: int(value.nbytes), on_lookup=on_cache_lookup
        )
        self.versions = Versions(store, self.cache)

    def admit(self, header: QueryHeader, caller: ClientRecord | None = None) -> Query:
        """Everything checkable before the ciphertexts arrive (BadRequestError, NotFoundError,
        InvalidIdError otherwise): the key id's syntax, the version, the ciphertext count, the
        key set's existence and kind; with a `caller`, that it owns the key set
        (PermissionDeniedError); that the client applied the model's input offset
        (PreconditionError); with a `caller`, that its budget is not spent already
        (QuotaExceededError: before the upload; the query is counted only when its
        computation starts, see Bill). Reads only the key set's metadata."""
        with about("header.key_id"):
            key_id = check_key_id(header.key_id)
        backend = header.backend
        with about("header.model_version"):
            version = self.versions.load(self.versions.resolve(header.model_version))
        spec = _spec(version, backend)
        name = f"{backend.scheme}/{backend.mode}"
        if header.ciphertext_count != spec.ciphertexts_per_query:
            raise BadRequestError(
                f"{name} on model {version.version} takes {spec.ciphertexts_per_query} "
                f"ciphertexts, the header announces {header.ciphertext_count}",
                field="header.ciphertext_count",
            )
        key = self._key_for(key_id, backend)
        if caller is not None and not self.store.owns_key(caller.name, key_id):
            raise PermissionDeniedError(f"key set {key_id} belongs to another client")
        check_client_knows(version, header)
        bill = None
        if caller is not None:
            self._check_budget(caller)
            bill = Bill(self.store, caller)
        note(
            scheme=backend.scheme,
            mode=backend.mode,
            model_version=version.version,
            kind=version.kind,
            quoted_seconds=version.quote(spec).get("server_seconds", backend.nominal_seconds),
        )
        return Query(version, spec, backend, key, bill)

    def _check_budget(self, caller: ClientRecord) -> None:
        """QuotaExceededError if `caller` has no query left today (not binding: Bill.spend
        counts atomically; this only spares a spent client its upload)."""
        per_day, usage = caller.quotas.queries_per_day, self.store.usage(caller.name)
        if usage.queries_today >= per_day:
            raise budget_spent(caller.name, per_day, usage.query_frees_in(time.time()))

    @contextlib.contextmanager
    def billing(self, query: Query) -> Iterator[Callable[[], None]]:
        """The block in which `query` is answered; it yields `answered`, to call as the first
        reply chunk is sent. A query the block leaves unanswered (refused, failed, its client
        gone before any reply) costs nothing: budgets pay for answers only."""
        if query.bill is None:
            yield lambda: None
            return
        try:
            yield query.bill.answered
        finally:
            query.bill.close()

    def evaluate(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        """The query's reply blocks, each as soon as it is computed (not in item order when
        shards compute it). With peers, a shardable backend's shards go to them; otherwise
        everything is computed here, in a work slot taken now (RefusedError at once if none
        is free) and released when the computation ends, off the serving thread. The query's
        bill is spent as its computation starts (QuotaExceededError if the budget is gone)."""
        spec, backend, version = query.spec, query.backend, query.version
        timer = Timer("evaluate")
        per_block, items = backend.items_per_reply(spec), spec.items
        runs = version.shard_runs(spec) if backend.shardable else []
        if len(runs) > 1 and self.peers is not None:
            if query.bill is not None:
                query.bill.spend()
            calls = RemoteShards(self.peers, _task_for(query), request_id())
            return scatter_gather(
                ciphertexts,
                runs,
                calls,
                lambda partials: self._combine(backend, partials),
                items=items,
                items_per_block=per_block,
                should_stop=should_stop,
                on_finish=timer.finish,
            )
        slot = self.work.hold()
        slot.__enter__()
        try:
            if query.bill is not None:
                query.bill.spend()
        except BaseException:
            slot.__exit__(None, None, None)
            raise

        def compute(stop: StopCheck) -> Iterator[ReplyBlock]:
            try:
                if backend.shardable:
                    local = LocalShards(self, _task_for(query))
                    yield from scatter_gather(
                        ciphertexts,
                        version.shard_runs(spec),
                        local,
                        lambda partials: self._combine(backend, partials),
                        items=items,
                        items_per_block=per_block,
                        should_stop=stop,
                    )
                else:
                    bound = self._bound(query.version, spec, backend, query.key, None)
                    for index, reply in enumerate(bound.stream(ciphertexts, stop)):
                        first = index * per_block
                        yield ReplyBlock(first, max(0, min(per_block, items - first)), reply)
            finally:
                slot.__exit__(None, None, None)
                timer.finish()

        return merged([compute], should_stop)

    # -- shards, for the ShardService and this process' own shard calls --

    def shard_first(
        self, task: ShardTask, ciphertexts: list[bytes], should_stop: StopCheck, wait: float
    ) -> bytes:
        """The shard's partial first product (in a work slot, waited for up to `wait` s)."""
        bound = self._shard_bound(task)
        with self.work.hold(wait):
            return bound.first(ciphertexts, should_stop)

    def shard_second(
        self, task: ShardTask, first: bytes, start: int, should_stop: StopCheck, wait: float
    ) -> Iterator[bytes]:
        """The shard's reply blocks from `start` on, computed in a work slot (waited for up
        to `wait` s) off the serving thread, handed on as each is computed."""
        bound = self._shard_bound(task)
        if not 0 <= start <= len(bound.blocks):
            raise BadRequestError(f"start {start} outside the shard's {len(bound.blocks)} blocks")

        def compute(stop: StopCheck) -> Iterator[bytes]:
            with self.work.hold(wait):
                yield from bound.second(first, start, stop)

        return merged([compute], should_stop)

    def _shard_bound(self, task: ShardTask) -> ShardBound:
        """The evaluator of one shard for one key set (NotFoundError, BadRequestError,
        PreconditionError if the version is split otherwise than the caller thinks)."""
        version = self.versions.load(check_version_id(task.version))
        backend = task.backend
        if not backend.shardable:
            raise BadRequestError(f"{backend.scheme}/{backend.mode} is not evaluated by shards")
        spec = _spec(version, backend)
        runs = version.shard_runs(spec)
        if task.shard_count != len(runs):
            raise PreconditionError(
                f"model {version.version} has {len(runs)} shards for {backend.scheme}/"
                f"{backend.mode}, the caller counts {task.shard_count}"
            )
        if not 0 <= task.shard < len(runs):
            raise BadRequestError(f"no shard {task.shard} of {len(runs)}")
        key = self._key_for(check_key_id(task.key_id), backend)
        bound = self._bound(version, spec, backend, key, runs[task.shard])
        assert isinstance(bound, ShardBound)
        return bound

    def _key_for(self, key_id: str, backend: Backend) -> KeyInfo:
        key = self.store.key_info(key_id)
        if (key.keys.scheme, key.keys.mode) != (backend.scheme, backend.mode):
            raise BadRequestError(
                f"key {key_id} is for {key.keys.scheme}/{key.keys.mode}, the request is "
                f"{backend.scheme}/{backend.mode}"
            )
        return key

    def _bound(
        self,
        version: ModelVersion,
        spec: SchemeSpec,
        backend: Backend,
        key: KeyInfo,
        run: range | None,
    ) -> Bound:
        """The encoding of `run` (None: the whole model) and a key set bound to it, from the
        cache or made now: only the shards this process computes are ever encoded here."""
        where = (run.start, run.stop) if run is not None else ()
        prepared = self._prepared(version, spec, backend, run)
        bound: Bound = self.cache.get(
            ("bound", key.key_id, version.version, spec.scheme, spec.mode, *where),
            lambda: self._bind(backend, prepared, key.key_id),
            expected_size=backend.bound_bytes(spec, key.size),
        )
        return bound

    def _prepared(
        self, version: ModelVersion, spec: SchemeSpec, backend: Backend, run: range | None
    ) -> PreparedModel:
        """The encoding of `run` of `version` for `backend` (None: the whole model), cached."""
        where = (run.start, run.stop) if run is not None else ()
        prepared: PreparedModel = self.cache.get(
            ("prepared", version.version, spec.scheme, spec.mode, *where),
            lambda: backend.prepare(version.packed, spec, run),
        )
        return prepared

    def warm(self, version_id: str, backends: Sequence[Backend]) -> list[str]:
        """Load model `version_id` and encode it for each of `backends` it offers (every
        shard, and the shards' combining context), so that its first query pays for neither.
        With peers, shards are encoded where they are assigned, on their first call: this
        process encodes only what it computes whole. Returns the "scheme/mode" names done."""
        version = self.versions.load(check_version_id(version_id))
        offered = {(s.scheme, s.mode) for s in version.specs}
        done = []
        for backend in backends:
            if (backend.scheme, backend.mode) not in offered:
                continue
            spec = _spec(version, backend)
            runs: list[range | None] = (
                list(version.shard_runs(spec)) if backend.shardable else [None]
            )
            if len(runs) > 1 and self.peers is not None:
                runs = []  # routed to peers (evaluate): each encodes its own on first call
            for run in runs:
                self._prepared(version, spec, backend, run)
            if backend.shardable:
                self._context(backend)
            done.append(f"{backend.scheme}/{backend.mode}")
        return done

    def _bind(self, backend: Backend, prepared: PreparedModel, key_id: str) -> Bound:
        record = self.store.get_key(key_id)
        keys, blobs = record.keys, record.keys.split(record.blob)
        del record  # the blobs are copies: let the whole go before the keys are loaded
        return backend.bind(prepared, keys, blobs, self.options)

    def _combine(self, backend: Backend, partials: list[bytes]) -> bytes:
        return backend.combine(partials, self._context(backend))

    def _context(self, backend: Backend) -> Any:
        context = self.cache.get(
            ("context", backend.scheme, backend.mode), lambda: _Sized(backend.context())
        )
        return context.value


@dataclass
class _Sized:
    """A cache entry of roughly known size: a parameter set's context (NTT tables)."""

    value: Any
    nbytes: int = 64 << 20


def check_client_knows(version: ModelVersion, header: QueryHeader) -> None:
    """PreconditionError unless the query was made for what the version is: its input offset
    (a client older than API 1.3.0 sends 0) and its kind (one older than 1.4.0 sends none,
    and would read a ranking model's scores as stars). Either would be answered wrongly."""
    expected_offset = version.packed.model.input_offset
    if not abs(header.input_offset - expected_offset) <= 1e-9:  # NaN is refused too
        raise PreconditionError(
            f"model {version.version} reads inputs with offset {expected_offset:g} and the "
            f"query was made with {header.input_offset:g}: update the client "
            "(cryptorec-api >= 1.3.0 reads the offset from GetModel)"
        )
    kind = version.kind
    if header.model_kind is None and kind != STARS:
        raise PreconditionError(
            f"model {version.version} is a {kind} model and this client does not say it knows "
            "model kinds: update it (cryptorec-api >= 1.4.0), or ask for a stars model"
        )
    if header.model_kind is not None and header.model_kind != kind:
        raise PreconditionError(
            f"model {version.version} is a {kind} model; the query was made for a "
            f"{header.model_kind} model"
        )


def _spec(version: ModelVersion, backend: Backend) -> SchemeSpec:
    try:
        return registry.find_spec(version.specs, backend.scheme, backend.mode)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def _task_for(query: Query) -> ShardTask:
    """The shard task of an admitted query (shard 0 of however many its version has)."""
    runs = query.version.shard_runs(query.spec)
    return ShardTask(query.version.version, query.key.key_id, query.backend, 0, len(runs))


class LocalShards:
    """ShardCalls computed in this process (no peers): sequentially, in the caller's slot."""

    def __init__(self, handler: EvaluatorHandler, task: ShardTask) -> None:
        self.handler, self.task = handler, task
        self._bounds: dict[int, ShardBound] = {}  # looked up once per query

    def _bound(self, shard: int) -> ShardBound:
        if shard not in self._bounds:
            self._bounds[shard] = self.handler._shard_bound(replace(self.task, shard=shard))
        return self._bounds[shard]

    def first(self, shard: int, ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
        return self._bound(shard).first(ciphertexts, should_stop)

    def second(self, shard: int, first: bytes, should_stop: StopCheck) -> Iterator[bytes]:
        return self._bound(shard).second(first, 0, should_stop)

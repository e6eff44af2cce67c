"""The evaluator's work, without gRPC: admitting a query (everything checkable before its
ciphertexts arrive) and computing it, by the strategy that fits (services/evaluator/
strategies.py).

Stateless: the model version is resolved per request (the current pointer, or the version the
client names) and every request is answered wholly from that version, so a publication during
a stream never mixes versions. Models, their encodings and clients' bound keys share one cache
bounded by bytes (services/evaluator/engine.py). The work (encoding, loading keys,
evaluating) holds a work slot, taken only once the request is complete and valid.

Fast mode on SEAL is computed by item shards (services/evaluator/shards/): with peers
(`--shard-peers`), the evaluator that receives a query of a version published in several
shards routes each shard to the peer assigned to it and computes none itself unless it is
that peer; a version of one shard, or an evaluator without peers, computes every shard where
the query lands.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from cryptorec.services.errors import (
    BadRequestError,
    PermissionDeniedError,
    PreconditionError,
    about,
)
from cryptorec.services.evaluator.concurrency import merged
from cryptorec.services.evaluator.engine import Engine, spec_of
from cryptorec.services.evaluator.query import Bill, Query, QueryHeader
from cryptorec.services.evaluator.shards.peers import Peers
from cryptorec.services.evaluator.shards.scatter import ReplyBlock
from cryptorec.services.evaluator.shards.task import ShardTask
from cryptorec.services.evaluator.strategies import (
    ShardedHere,
    ShardedOnPeers,
    Strategy,
    Whole,
)
from cryptorec.services.observability.current import note
from cryptorec.services.store.base import ClientRecord, Store, budget_spent, check_key_id
from cryptorec.services.versions import ModelVersion
from cryptorec.services.work import WorkSlots
from libcryptorec.he.backend import EMPTY, Backend
from libcryptorec.he.cancel import StopCheck
from libcryptorec.model import STARS


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
        by all three; `options`: the backends' own settings (Backend.options);
        `on_cache_lookup(key, hit)` hears of every cache lookup; `peers`: the evaluators that
        compute item shards (None: every shard is computed here)."""
        self.store, self.work = store, work
        self.engine = Engine(store, cache_bytes, options, on_cache_lookup)
        self._whole = Whole(self.engine, work)
        self._sharded_here = ShardedHere(self.engine, work)
        self._on_peers = ShardedOnPeers(self.engine, peers) if peers is not None else None

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
            version = self.engine.versions.load(self.engine.versions.resolve(header.model_version))
        spec = spec_of(version, backend)
        name = backend.id
        if header.ciphertext_count != spec.ciphertexts_per_query:
            raise BadRequestError(
                f"{name} on model {version.version} takes {spec.ciphertexts_per_query} "
                f"ciphertexts, the header announces {header.ciphertext_count}",
                field="header.ciphertext_count",
            )
        key = self.engine.key_for(key_id, backend)
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
        shards compute it), by the strategy that fits (`strategy`)."""
        return self.strategy(query).replies(query, ciphertexts, should_stop)

    def strategy(self, query: Query) -> Strategy:
        """How `query` is computed: on peers if its version is sharded and there are peers,
        else here, by shards if its backend is shardable, else whole."""
        backend = query.backend
        if not backend.shardable:
            return self._whole
        if self._on_peers is not None and len(query.version.shard_runs(query.spec)) > 1:
            return self._on_peers
        return self._sharded_here

    def warm(self, version_id: str, backends: Sequence[Backend]) -> list[str]:
        """Encode model `version_id` for `backends` before it is queried (Engine.warm)."""
        return self.engine.warm(version_id, backends, with_peers=self._on_peers is not None)

    # -- shards, for the ShardService --

    def shard_first(
        self, task: ShardTask, ciphertexts: list[bytes], should_stop: StopCheck, wait: float
    ) -> bytes:
        """The shard's partial first product (in a work slot, waited for up to `wait` s)."""
        bound = self.engine.shard_bound(task)
        with self.work.hold(wait):
            return bound.first(ciphertexts, should_stop)

    def shard_second(
        self, task: ShardTask, first: bytes, start: int, should_stop: StopCheck, wait: float
    ) -> Iterator[bytes]:
        """The shard's reply blocks from `start` on, computed in a work slot (waited for up
        to `wait` s) off the serving thread, handed on as each is computed."""
        bound = self.engine.shard_bound(task)
        if not 0 <= start <= len(bound.blocks):
            raise BadRequestError(f"start {start} outside the shard's {len(bound.blocks)} blocks")

        def compute(stop: StopCheck) -> Iterator[bytes]:
            with self.work.hold(wait):
                yield from bound.second(first, start, stop)

        return merged([compute], should_stop)


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

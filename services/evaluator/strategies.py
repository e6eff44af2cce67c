"""The ways of computing an admitted query, one object each: whole in this process
(`Whole`), by item shards in this process (`ShardedHere`), by item shards on peers
(`ShardedOnPeers`). Each yields the query's reply blocks as they are computed, and spends
the query's bill as its computation starts (QuotaExceededError if the budget is gone)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Protocol

from cryptorec.services.evaluator.concurrency import merged
from cryptorec.services.evaluator.engine import Engine
from cryptorec.services.evaluator.query import Query
from cryptorec.services.evaluator.shards.local import LocalShards
from cryptorec.services.evaluator.shards.peers import Peers
from cryptorec.services.evaluator.shards.remote import RemoteShards
from cryptorec.services.evaluator.shards.scatter import ReplyBlock, ShardCalls, scatter_gather
from cryptorec.services.evaluator.shards.task import ShardTask
from cryptorec.services.observability.current import Timer, request_id
from cryptorec.services.work import WorkSlots
from libcryptorec.he.cancel import StopCheck


class Strategy(Protocol):
    def replies(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        """The query's reply blocks, each as soon as it is computed."""
        ...


def task_of(query: Query) -> ShardTask:
    """The shard task of an admitted query (shard 0 of however many its version has)."""
    runs = query.version.shard_runs(query.spec)
    return ShardTask(query.version.version, query.key.key_id, query.backend, 0, len(runs))


def _spend(query: Query) -> None:
    if query.bill is not None:
        query.bill.spend()


class _InASlot(ABC):
    """Computed here, in a work slot taken now (RefusedError at once if none is free) and
    released when the computation ends, off the serving thread."""

    def __init__(self, engine: Engine, work: WorkSlots) -> None:
        self.engine, self.work = engine, work

    def replies(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        with contextlib.ExitStack() as taken:
            taken.enter_context(self.work.hold())
            _spend(query)
            held = taken.pop_all()  # from here on, the computation releases it
        timer = Timer("evaluate")

        def compute(stop: StopCheck) -> Iterator[ReplyBlock]:
            with held:
                try:
                    yield from self.compute(query, ciphertexts, stop)
                finally:
                    timer.finish()

        return merged([compute], should_stop)

    @abstractmethod
    def compute(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        """The reply blocks, computed in the slot `replies` took."""


class Whole(_InASlot):
    """A backend that is not sharded: the bound evaluator streams its replies."""

    def compute(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        spec, backend = query.spec, query.backend
        per_block = backend.items_per_reply(spec)
        bound = self.engine.bound(query.version, spec, backend, query.key, None)
        for index, reply in enumerate(bound.stream(ciphertexts, should_stop)):
            yield ReplyBlock.numbered(index, per_block, spec.items, reply)


def _gathered(
    engine: Engine,
    query: Query,
    ciphertexts: list[bytes],
    calls: ShardCalls,
    should_stop: StopCheck,
    on_finish: Timer | None = None,
) -> Iterator[ReplyBlock]:
    spec, backend = query.spec, query.backend
    return scatter_gather(
        ciphertexts,
        query.version.shard_runs(spec),
        calls,
        lambda partials: engine.combine(backend, partials),
        items=spec.items,
        items_per_block=backend.items_per_reply(spec),
        should_stop=should_stop,
        on_finish=on_finish.finish if on_finish is not None else None,
    )


class ShardedHere(_InASlot):
    """A shardable backend without peers: every shard in this process, one after another."""

    def compute(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        local = LocalShards(self.engine, task_of(query))
        return _gathered(self.engine, query, ciphertexts, local, should_stop)


class ShardedOnPeers:
    """A version split into several shards, with peers: each shard goes to the peer ranked
    first for it (this process holds no work slot meanwhile; the peers do)."""

    def __init__(self, engine: Engine, peers: Peers) -> None:
        self.engine, self.peers = engine, peers

    def replies(
        self, query: Query, ciphertexts: list[bytes], should_stop: StopCheck
    ) -> Iterator[ReplyBlock]:
        _spend(query)
        calls = RemoteShards(self.peers, task_of(query), request_id())
        timer = Timer("evaluate")
        return _gathered(self.engine, query, ciphertexts, calls, should_stop, timer)

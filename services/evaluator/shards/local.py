"""Shard calls computed in this process (no peers): sequentially, in the caller's slot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from cryptorec.services.evaluator.engine import Engine
from cryptorec.services.evaluator.shards.task import ShardTask
from libcryptorec.he.backend import ShardBound
from libcryptorec.he.cancel import StopCheck


class LocalShards:
    """ShardCalls of one query (`task`: its shard 0) answered by this process' engine."""

    def __init__(self, engine: Engine, task: ShardTask) -> None:
        self.engine, self.task = engine, task
        self._bounds: dict[int, ShardBound] = {}  # looked up once per query

    def _bound(self, shard: int) -> ShardBound:
        if shard not in self._bounds:
            self._bounds[shard] = self.engine.shard_bound(replace(self.task, shard=shard))
        return self._bounds[shard]

    def first(self, shard: int, ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
        return self._bound(shard).first(ciphertexts, should_stop)

    def second(self, shard: int, first: bytes, should_stop: StopCheck) -> Iterator[bytes]:
        return self._bound(shard).second(first, 0, should_stop)

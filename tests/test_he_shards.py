"""Item shards (libcryptorec.he.shards, FastKernel): a query evaluated by shards, partials
added, equals the unsharded evaluation within the scheme's tolerance, for CKKS and BFV, and
reply blocks come out one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.compression import compress
from libcryptorec.he import registry
from libcryptorec.he.backend import ClientInputs, ShardBound
from libcryptorec.he.shards import default_shards, shard_blocks, split_query
from tests.test_model import make_model

pytestmark = pytest.mark.he
SLOTS = 4096
ITEMS = 2 * SLOTS + 900  # three blocks, the last one partly filled


@given(blocks=st.integers(1, 200), shards=st.integers(1, 40))
def test_shards_cover_every_block_once_in_order(blocks: int, shards: int) -> None:
    if shards > blocks:
        with pytest.raises(ValueError, match="cannot split"):
            shard_blocks(blocks, shards)
        return
    runs = shard_blocks(blocks, shards)
    assert [b for r in runs for b in r] == list(range(blocks))
    assert max(map(len, runs)) - min(map(len, runs)) <= 1
    assert default_shards(blocks) >= 1


@pytest.fixture(scope="module")
def packed():  # type: ignore[no-untyped-def]
    model = make_model(m=ITEMS, d=8, seed=3)
    model.A *= 0.4
    model.Q *= 0.4
    return compress(model, 0.005, 128)


def _ratings(seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    row = np.zeros(ITEMS)
    rated = rng.choice(ITEMS, 60, replace=False)
    row[rated] = rng.integers(1, 6, 60)
    return sp.csr_matrix(row)


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_sharded_equals_unsharded_and_the_model(scheme: str, packed) -> None:  # type: ignore[no-untyped-def]
    backend = registry.get(scheme, "fast")
    spec = backend.spec(packed)
    client = backend.new_client(spec, ClientInputs.of(packed.model))
    blobs = client.key_blobs()
    keys = registry.key_set_for(spec, blobs)
    ratings = _ratings(1)
    cts, rbar = client.encrypt(ratings)
    whole = backend.bind(backend.prepare(packed, spec), keys, blobs)
    expected = rbar + client.decrypt(whole.evaluate(cts))
    np.testing.assert_allclose(
        expected, backend.reference(packed.model, ratings), atol=backend.tolerance
    )
    context = backend.context()
    for shards in (2, 3):
        runs = shard_blocks(spec.plan().blocks, shards)
        bounds = [backend.bind(backend.prepare(packed, spec, r), keys, blobs) for r in runs]
        assert all(isinstance(b, ShardBound) for b in bounds)
        partials = [b.first(part) for b, part in zip(bounds, split_query(cts, runs), strict=True)]
        first = backend.combine(partials, context)
        replies = [reply for b in bounds for reply in b.second(first)]
        got = rbar + client.decrypt(replies)
        np.testing.assert_allclose(got, expected, atol=backend.tolerance)
        # Restarting a shard's replies part-way (a retry) gives the same blocks.
        assert len(list(bounds[0].second(first, start=1))) == len(runs[0]) - 1


def test_replies_come_one_at_a_time(packed) -> None:  # type: ignore[no-untyped-def]
    backend = registry.get("ckks", "fast")
    spec = backend.spec(packed)
    client = backend.new_client(spec, ClientInputs.of(packed.model))
    blobs = client.key_blobs()
    bound = backend.bind(backend.prepare(packed, spec), registry.key_set_for(spec, blobs), blobs)
    cts, _ = client.encrypt(_ratings(2))
    stream = bound.stream(cts)
    first_reply = next(stream)  # computed before the others are
    assert isinstance(first_reply, bytes)
    assert len(list(stream)) == spec.plan().blocks - 1


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_partials_of_a_query_differ_from_its_replies(packed, seed: int) -> None:  # type: ignore[no-untyped-def]
    """A partial first product is for servers only: it is never one of the reply blocks."""
    backend = registry.get("ckks", "fast")
    spec = backend.spec(packed)
    client = backend.new_client(spec, ClientInputs.of(packed.model))
    blobs = client.key_blobs()
    bound = backend.bind(backend.prepare(packed, spec), registry.key_set_for(spec, blobs), blobs)
    cts, _ = client.encrypt(_ratings(seed))
    partial = bound.first(cts)
    assert partial not in bound.evaluate(cts)


@given(shards=st.integers(1, 40), peers=st.integers(1, 12), version=st.text(max_size=8))
def test_shards_spread_evenly_and_every_router_agrees(
    shards: int, peers: int, version: str
) -> None:
    from cryptorec.services.evaluator.shards.peers import assign

    addresses = [f"10.0.0.{i}:50051" for i in range(peers)]
    keys = [f"{version}|ckks|fast|{s}|{shards}" for s in range(shards)]
    plan = assign(keys, addresses)
    assert plan == assign(keys, list(reversed(addresses)))  # the order peers are listed in
    owners = [candidates[0] for candidates in plan]
    share = -(-shards // peers)
    assert max(owners.count(a) for a in addresses) <= share
    assert all(sorted(c) == sorted(addresses) for c in plan)  # retries reach every peer

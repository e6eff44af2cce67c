"""Mutated ciphertexts and keys (RELIABILITY.md lines 2, 10): whatever a client does to valid
bytes, the library either computes (the bytes still form a valid query) or refuses with an
HEError, which the services answer INVALID_ARGUMENT. Never another exception, which would be
INTERNAL."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcryptorec.compression import compress
from libcryptorec.he import registry
from libcryptorec.he.errors import HEError
from tests.test_model import make_model, random_ratings

pytestmark = [pytest.mark.he, pytest.mark.slow]
SEAL_FAST = [("ckks", "fast"), ("bfv", "fast")]


@pytest.fixture(scope="module")
def engines():  # type: ignore[no-untyped-def]
    model = make_model(m=50, d=6, seed=8)
    model.A *= 0.3
    model.Q *= 0.3
    packed = compress(model, 0.0, 64)
    out = {}
    for scheme, mode in [*SEAL_FAST, ("paillier", "fast")]:
        client, evaluator = registry.open_local(packed, scheme, mode)
        query, _ = client.encrypt(random_ratings(1, 50, 0.3, 3))
        out[scheme] = (client, evaluator, query)
    yield out
    for _, evaluator, _ in out.values():
        evaluator.close()


def mutations(blob: bytes) -> st.SearchStrategy[bytes]:
    """Byte flips (mostly in headers and metadata), field overwrites with extreme numbers,
    truncations, appended bytes and zeroed ranges."""
    head = min(len(blob), 160)
    flip = st.tuples(st.integers(0, head - 1), st.integers(1, 255)).map(
        lambda t: blob[: t[0]] + bytes([blob[t[0]] ^ t[1]]) + blob[t[0] + 1 :]
    )
    extreme = st.sampled_from(
        [struct.pack("<d", v) for v in (float("nan"), float("inf"), -1.0, 0.0, 1e300)]
        + [struct.pack("<Q", v) for v in (0, 1, 2**63, 2**64 - 1, 3)]
    )
    overwrite = st.tuples(st.integers(0, max(0, head - 8)), extreme).map(
        lambda t: blob[: t[0]] + t[1] + blob[t[0] + 8 :]
    )
    truncate = st.integers(0, len(blob) - 1).map(lambda k: blob[:k])
    append = st.binary(min_size=1, max_size=64).map(lambda extra: blob + extra)
    zero = st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 4096)).map(
        lambda t: blob[: t[0]] + bytes(min(t[1], len(blob) - t[0])) + blob[t[0] + t[1] :]
    )
    return st.one_of(flip, overwrite, truncate, append, zero)


def _computes_or_refuses(run: Callable[[], object]) -> None:
    with contextlib.suppress(HEError):  # anything else fails the test
        run()


@pytest.mark.parametrize("scheme", ["ckks", "bfv", "paillier"])
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_ciphertexts_compute_or_are_refused(engines, scheme: str, data) -> None:  # type: ignore[no-untyped-def]
    _, evaluator, query = engines[scheme]
    k = data.draw(st.integers(0, len(query) - 1))
    mutated = [*query[:k], data.draw(mutations(query[k])), *query[k + 1 :]]
    _computes_or_refuses(lambda: evaluator.evaluate(mutated))


@pytest.mark.parametrize(("scheme", "mode"), SEAL_FAST)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_keys_load_or_are_refused(engines, scheme: str, mode: str, data) -> None:  # type: ignore[no-untyped-def]
    client = engines[scheme][0]
    blobs = client.key_blobs()
    keys = registry.key_set_for(client.spec, blobs)
    name = data.draw(st.sampled_from(sorted(blobs)))
    blobs[name] = data.draw(mutations(blobs[name]))
    _computes_or_refuses(lambda: registry.get(scheme, mode).validate_keys(keys, blobs))

"""One contract for every backend (RELIABILITY.md lines 11, 12, 37), written once.

`BackendContract` is a mixin (as implicit's recommender base tests): a test class that provides
a `backend` fixture inherits every test. tests/test_he_contract.py runs it for each registered
backend; a new backend gets it by registering (tests/test_toy_backend.py shows how).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from libcryptorec.compression import CompressedModel, compress, threshold_for_fraction
from libcryptorec.he import registry
from libcryptorec.he.backend import Backend, ClientInputs, KeySet
from libcryptorec.he.errors import HEError, InvalidKeyError
from libcryptorec.model import RANKING
from libcryptorec.ranking import masked_scores
from libcryptorec.ranking_model import RankingConfig, train_ranking
from tests.test_model import make_model, random_ratings
from tests.test_ranking_model import new_user_split, taste_groups


def contract_model(items: int, dim: int, seed: int) -> CompressedModel:
    """Zero, negative and positive weights, an all-zero row, a chosen one-step fine-tuning and
    an input offset (the client's input is not just the centred ratings)."""
    model = make_model(m=items, d=dim, seed=seed)
    model.input_offset = 0.5
    model.A *= 0.3
    model.Q *= 0.3
    model.A[1] = 0.0
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    return compress(model, threshold=0.01, clusters=64)


def round_trip(backend: Backend, items: int, dim: int, seed: int, density: float) -> None:
    """decrypt(evaluate(encrypt(r))) equals the backend's plaintext reference."""
    packed = contract_model(items, dim, seed)
    client, evaluator = registry.open_local(packed, backend.scheme, backend.mode)
    try:
        ratings = random_ratings(1, items, density, seed + 1)
        query, rbar = client.encrypt(ratings)
        predicted = rbar + client.decrypt(evaluator.evaluate(query))
        expected = backend.reference(packed.model, ratings)
        np.testing.assert_allclose(predicted, expected, atol=backend.tolerance)
    finally:
        evaluator.close()


@functools.cache
def ranking_case() -> tuple[CompressedModel, object]:
    """A ranking model trained by the real trainer on taste groups, compressed as served, and
    the feeding ratings of its new users."""
    train, feed, _ = new_user_split(taste_groups(users=400, items=60))
    model = train_ranking(train, RankingConfig(dims=(8,), l2_factors=(1.0,))).model
    return compress(model, threshold_for_fraction(model, 0.5), 512), feed


class BackendContract:
    """Every backend: exact enough, re-randomised, strict about its input and its keys."""

    def test_contract_ranking_model_ranks_as_in_plaintext(self, backend: Backend) -> None:
        """RELIABILITY.md line 37: a ranking model's decrypted top 10 is its plaintext top 10
        (scores within the tolerance, the user's mean never added); a backend that does not
        compute ranking models refuses one."""
        packed, feed = ranking_case()
        if RANKING not in backend.kinds:
            with pytest.raises(ValueError, match="does not compute ranking models"):
                registry.open_local(packed, backend.scheme, backend.mode)
            assert all(
                s.mode != backend.mode for s in registry.specs(packed) if s.scheme == backend.scheme
            )
            return
        client, evaluator = registry.open_local(packed, backend.scheme, backend.mode)
        try:
            for u in range(8):
                ratings = feed[u]  # type: ignore[index]
                query, base = client.encrypt(ratings)
                assert base == 0.0
                decrypted = client.decrypt(evaluator.evaluate(query))
                expected = backend.reference(packed.model, ratings)
                np.testing.assert_allclose(decrypted, expected, atol=backend.tolerance)
                # The decrypted top 10 is the plaintext top 10, but for items whose plaintext
                # scores lie closer than the scheme's error (a near-tie may fall either way).
                plain = masked_scores(expected[None, :], ratings)[0]
                shown = np.argsort(-masked_scores(decrypted[None, :], ratings)[0], kind="stable")
                tenth = np.sort(plain)[::-1][9]
                assert np.all(plain[shown[:10]] >= tenth - 2 * backend.tolerance)
        finally:
            evaluator.close()

    def test_contract_equals_plaintext_model(self, backend: Backend) -> None:
        round_trip(backend, items=60, dim=7, seed=3, density=0.3)

    def test_contract_tiny_model_with_zero_diagonals(self, backend: Backend) -> None:
        # With 2 items and d = 3 some diagonals are entirely zero, and SEAL refuses to
        # multiply by a zero plaintext ("transparent" result).
        round_trip(backend, items=2, dim=3, seed=0, density=0.5)

    def test_contract_same_request_twice(self, backend: Backend) -> None:
        client, evaluator = registry.open_local(
            contract_model(60, 7, seed=3), backend.scheme, backend.mode
        )
        try:
            ratings = random_ratings(1, 60, 0.3, 1)
            query, _ = client.encrypt(ratings)
            assert query != client.encrypt(ratings)[0]
            r1, r2 = evaluator.evaluate(query), evaluator.evaluate(query)
            assert r1 != r2
            np.testing.assert_allclose(
                client.decrypt(r1), client.decrypt(r2), atol=backend.tolerance
            )
        finally:
            evaluator.close()

    def test_contract_garbage_is_refused_with_an_he_error(self, backend: Backend) -> None:
        client, evaluator = registry.open_local(
            contract_model(60, 7, seed=4), backend.scheme, backend.mode
        )
        try:
            good, _ = client.encrypt(random_ratings(1, 60, 0.3, 2))
            for bad in (
                [b"\x00" * 7] * len(good),
                [],
                [g[: len(g) // 2] for g in good],
                good + good,
            ):
                with pytest.raises(HEError):
                    evaluator.evaluate(bad)
        finally:
            evaluator.close()

    def test_contract_keys_of_another_kind_are_refused(self, backend: Backend) -> None:
        packed = contract_model(20, 4, seed=5)
        spec = backend.spec(packed)
        client = backend.new_client(spec, ClientInputs.of(packed.model))
        blobs = client.key_blobs()
        keys = registry.key_set_for(spec, blobs)
        backend.validate_keys(keys, blobs)  # its own keys load
        prepared = backend.prepare(packed, spec)
        other = KeySet("elsewhere", keys.mode, keys.parameter_set, keys.rotation_steps, keys.blobs)
        for wrong in (
            other,
            KeySet(keys.scheme, keys.mode, "another-set", keys.rotation_steps, keys.blobs),
            KeySet(keys.scheme, keys.mode, keys.parameter_set, keys.rotation_steps, ()),
        ):
            with pytest.raises(InvalidKeyError):
                backend.bind(prepared, wrong, {} if not wrong.blobs else blobs)
        secret = KeySet(
            keys.scheme,
            keys.mode,
            keys.parameter_set,
            keys.rotation_steps,
            (*keys.blobs, ("secret_key", 1)),
        )
        with pytest.raises(InvalidKeyError):  # never a secret key
            backend.bind(prepared, secret, {**blobs, "secret_key": b"s"})
        with pytest.raises(InvalidKeyError):
            backend.validate_keys(keys, {})

    def test_contract_declares_its_costs(self, backend: Backend) -> None:
        packed = contract_model(30, 5, seed=6)
        spec = backend.spec(packed)
        assert spec.ciphertexts_per_query > 0
        assert backend.query_bytes(spec) > 0
        assert backend.key_set_cap() > 0
        assert backend.items_per_reply(spec) > 0
        assert backend.wire[0] > 0
        assert backend.wire[1] > 0

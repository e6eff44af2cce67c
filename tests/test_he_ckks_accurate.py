"""CKKS accurate mode (one fine-tuning step): equal to the plaintext step within tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from libcryptorec.he.ckks_accurate import (
    AccurateClient,
    AccurateEvaluator,
    AccurateModel,
    client_vectors,
    reference_accurate1,
)
from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.seal import SealPublicKeys
from tests.test_model import make_model, random_ratings

pytestmark = [pytest.mark.he, pytest.mark.slow]
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    model = make_model(m=100, d=16, seed=1)
    encoded = AccurateModel.encode(model.A, model.Q, model.item_bias)
    client = AccurateClient(encoded.plan)
    server = AccurateEvaluator(client.public_material())
    return model, encoded, client, server


@pytest.mark.parametrize("eta", [0.5, 3.0])
def test_contract_one_step_equals_plaintext_fine_tuning(setup, eta: float) -> None:  # type: ignore[no-untyped-def]
    model, encoded, client, server = setup
    ratings = random_ratings(3, 100, 0.3, 4)
    for u in range(3):
        vectors, _ = client_vectors(model, ratings[u], eta)
        reply = server.accurate1(server.load_query(client.encrypt(vectors), encoded.plan), encoded)
        reference = reference_accurate1(model, ratings[u], eta)
        fast = model.predict(ratings[u])[0] - ratings[u].data.mean()
        assert np.abs(reference - fast).max() > 10 * TOLERANCE  # the step really moves things
        np.testing.assert_allclose(client.decrypt(reply), reference, atol=TOLERANCE)


def test_wrong_number_of_vectors_is_rejected(setup) -> None:  # type: ignore[no-untyped-def]
    model, encoded, client, server = setup
    vectors, _ = client_vectors(model, random_ratings(1, 100, 0.3, 5), 1.0)
    query = client.encrypt(vectors)
    with pytest.raises(InvalidCiphertextError, match="5 vectors"):
        server.load_query(query[:4], encoded.plan)
    with pytest.raises(InvalidCiphertextError):
        server.load_query([*query[:4], [query[4][0][:1000]]], encoded.plan)


def test_fast_mode_keys_are_not_accurate_mode_keys(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, client, _ = setup
    m = client.public_material()
    with pytest.raises(InvalidKeyError):
        AccurateEvaluator(
            SealPublicKeys(
                "ckks",
                "ckks-8192-fast",
                m.public_key,
                m.rotation_keys,
                m.rotation_steps,
                m.relin_key,
            )
        )
    with pytest.raises(InvalidKeyError, match="larger"):
        AccurateEvaluator(
            SealPublicKeys(
                m.scheme,
                m.params,
                m.public_key,
                m.rotation_keys,
                m.rotation_steps,
                (m.relin_key or b"") * 3,
            )
        )

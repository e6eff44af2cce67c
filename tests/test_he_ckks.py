"""CKKS fast mode: equal to the plaintext model within tolerance, and refusals before work."""

from __future__ import annotations

import numpy as np
import pytest

from libcryptorec.he.ckks import CkksClient, CkksEvaluator, CkksModel
from libcryptorec.he.errors import InsecureParametersError, InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.params import CKKS_FAST_8192, CkksParams, check_security
from libcryptorec.he.seal import SealPublicKeys

pytestmark = pytest.mark.he
PARAMS = CKKS_FAST_8192
# Stated tolerance for fast mode on models of ml-1m's weight scale (|A|, |Q| <~ 0.3).
TOLERANCE = 1e-3


def _setup(items: int, dim: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    A = rng.normal(0, 0.05, (items, dim))
    Q = rng.normal(0, 0.05, (items, dim))
    A[rng.random(A.shape) < 0.1] = 0.0
    A[0] = 0.0  # an all-zero row
    bias = rng.normal(0, 0.5, items)
    model = CkksModel.encode(PARAMS, A, Q, bias)
    client = CkksClient(PARAMS, model.plan)
    server = CkksEvaluator(PARAMS, client.public_material())
    x = np.zeros(items)
    rated = rng.choice(items, size=min(items, 40), replace=False)
    x[rated] = rng.normal(0, 1, len(rated)) / np.sqrt(len(rated))
    return A, Q, bias, model, client, server, x


@pytest.fixture(scope="module")
def ml1m_shaped():  # type: ignore[no-untyped-def]
    return _setup(3706, 500)


@pytest.mark.parametrize(
    ("items", "dim"), [(50, 7), (5000, 8)], ids=["tiny", "more-items-than-slots"]
)
def test_contract_fast_mode_equals_plaintext(items: int, dim: int) -> None:
    A, Q, bias, model, client, server, x = _setup(items, dim, seed=items)
    reply = server.fast(server.load_query(client.encrypt(x), model), model)
    assert len(reply) == model.plan.blocks
    np.testing.assert_allclose(client.decrypt(reply), bias + x @ A @ Q.T, atol=TOLERANCE)


@pytest.mark.slow
def test_contract_ml1m_shape(ml1m_shaped) -> None:  # type: ignore[no-untyped-def]
    A, Q, bias, model, client, server, x = ml1m_shaped
    reply = server.fast(server.load_query(client.encrypt(x), model), model)
    np.testing.assert_allclose(client.decrypt(reply), bias + x @ A @ Q.T, atol=TOLERANCE)


def test_same_request_twice_differs_in_bytes_not_in_value() -> None:
    _, _, _, model, client, server, x = _setup(50, 7)
    q1, q2 = client.encrypt(x), client.encrypt(x)
    assert q1 != q2
    r1 = server.fast(server.load_query(q1, model), model)
    r2 = server.fast(server.load_query(q1, model), model)  # same query bytes
    assert r1 != r2  # replies re-randomised
    np.testing.assert_allclose(client.decrypt(r1), client.decrypt(r2), atol=TOLERANCE)


def test_truncated_or_foreign_ciphertext_is_rejected() -> None:
    _, _, _, model, client, server, x = _setup(50, 7)
    blob = client.encrypt(x)[0]
    for bad in (blob[: len(blob) // 2], b"\x00" * 64, b"", blob + b"\x00" * 100_000):
        with pytest.raises(InvalidCiphertextError):
            server.load_query([bad], model)


def test_wrong_block_count_is_rejected() -> None:
    _, _, _, model, client, server, x = _setup(50, 7)
    blob = client.encrypt(x)[0]
    with pytest.raises(InvalidCiphertextError, match="blocks"):
        server.load_query([blob, blob], model)


def test_reply_is_not_a_valid_query() -> None:
    _, _, _, model, client, server, x = _setup(50, 7)
    reply = server.fast(server.load_query(client.encrypt(x), model), model)
    with pytest.raises(InvalidCiphertextError):
        server.load_query(reply, model)  # one limb, wrong scale: refused


def test_keys_of_another_scheme_or_parameter_set_are_rejected() -> None:
    client = _setup(50, 7)[4]
    m = client.public_material()
    with pytest.raises(InvalidKeyError, match="paillier"):
        CkksEvaluator(
            PARAMS,
            SealPublicKeys("paillier", m.params, m.public_key, m.rotation_keys, m.rotation_steps),
        )
    with pytest.raises(InvalidKeyError):
        CkksEvaluator(
            PARAMS,
            SealPublicKeys("ckks", "ckks-other", m.public_key, m.rotation_keys, m.rotation_steps),
        )


def test_oversized_key_blob_is_rejected_before_loading() -> None:
    _, _, _, _, client, _, _ = _setup(50, 7)
    m = client.public_material()
    with pytest.raises(InvalidKeyError, match="larger"):
        CkksEvaluator(
            PARAMS,
            SealPublicKeys(
                "ckks",
                m.params,
                m.public_key + b"\x00" * 10_000_000,
                m.rotation_keys,
                m.rotation_steps,
            ),
        )
    with pytest.raises(InvalidKeyError, match="larger"):
        CkksEvaluator(
            PARAMS,
            SealPublicKeys("ckks", m.params, m.public_key, m.rotation_keys * 20, m.rotation_steps),
        )


def test_garbage_keys_are_rejected() -> None:
    _, _, _, _, client, _, _ = _setup(50, 7)
    m = client.public_material()
    with pytest.raises(InvalidKeyError):
        CkksEvaluator(
            PARAMS,
            SealPublicKeys("ckks", m.params, b"\x01" * 1000, m.rotation_keys, m.rotation_steps),
        )


def test_public_material_carries_no_secret_key() -> None:
    _, _, _, _, client, _, _ = _setup(50, 7)
    secret = client._he.to_bytes_secret_key(compr_mode="none")
    m = client.public_material()
    body = secret[64:4096]  # a slice of the secret polynomial itself
    assert body not in m.public_key
    assert body not in m.rotation_keys
    with pytest.raises(InvalidKeyError):  # a secret key posing as a public key does not load
        CkksEvaluator(
            PARAMS, SealPublicKeys("ckks", m.params, secret, m.rotation_keys, m.rotation_steps)
        )


def test_missing_rotation_keys_are_refused_before_work() -> None:
    _, _, _, model, client, _, x = _setup(50, 7)
    client._he.rotateKeyGen(rot_steps=[1])  # a client that made too few Galois keys
    m = client.public_material()
    rotation_keys = client._he.to_bytes_rotate_key(compr_mode="none")
    server = CkksEvaluator(
        PARAMS, SealPublicKeys("ckks", m.params, m.public_key, rotation_keys, (1,))
    )
    with pytest.raises(InvalidKeyError, match="rotation steps"):
        server.fast(server.load_query(client.encrypt(x), model), model)


@pytest.mark.parametrize(
    ("n", "primes"),
    [
        (8192, (60, 60, 60, 60)),
        (4096, (60, 60)),
        (3000, (30, 30)),
        (8192, (61, 40, 60)),
        (8192, (60,)),
    ],
)
def test_parameters_outside_the_security_table_are_refused(n: int, primes: tuple[int, ...]) -> None:
    with pytest.raises(InsecureParametersError):
        check_security(n, primes)


def test_incoherent_parameter_sets_are_refused() -> None:
    with pytest.raises(InsecureParametersError, match="overflows"):
        CkksParams("bad", 8192, (60, 40, 60), 40, 35, 30).check()

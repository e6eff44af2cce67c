"""Paillier fast mode: exact against the fixed-point model; every bad input refused first."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from libcryptorec.compression import compress
from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.paillier import (
    PaillierClient,
    PaillierEvaluator,
    PaillierModel,
    PaillierPublicKey,
    validate_modulus,
)
from tests.test_model import make_model

pytestmark = pytest.mark.he


@pytest.fixture(scope="module")
def client() -> PaillierClient:
    return PaillierClient(2048)


@pytest.fixture(scope="module")
def setup(client: PaillierClient):  # type: ignore[no-untyped-def]
    packed = compress(make_model(m=40, d=6, seed=5), 0.01, 32)
    model = PaillierModel.encode(packed)
    server = PaillierEvaluator(client.public_material(), model)
    rng = np.random.default_rng(1)
    x = np.zeros(40)
    x[:15] = rng.normal(0, 1, 15)
    return packed, model, server, x


@pytest.mark.parametrize(("workers", "method"), [(1, "bucket"), (2, "bucket"), (2, "paper")])
@pytest.mark.parametrize(("m", "d", "seed"), [(40, 6, 0), (90, 17, 1)])
def test_contract_exact_against_fixed_point_model(
    client: PaillierClient, workers: int, method: str, m: int, d: int, seed: int
) -> None:
    model_f = make_model(m=m, d=d, seed=seed)
    model_f.A[3] = 0.0  # an all-zero row
    packed = compress(model_f, 0.02, 48)  # negative, zero and positive weights
    model = PaillierModel.encode(packed)
    server = PaillierEvaluator(client.public_material(), model, workers=workers, method=method)
    try:
        x = np.random.default_rng(seed).normal(0, 1, m)
        reply = server.fast(server.load_query(client.encrypt(x)))
        assert client.decrypt_ints(reply, server.layout) == model.reference(x)
        dense = packed.model.item_bias + x @ packed.model.A @ packed.model.Q.T
        np.testing.assert_allclose(client.decrypt(reply, server.layout), dense, atol=5e-3)
    finally:
        server.close()


def test_same_request_twice_differs_in_bytes_not_in_value(client: PaillierClient, setup) -> None:  # type: ignore[no-untyped-def]
    _, _, server, x = setup
    q1, q2 = client.encrypt(x), client.encrypt(x)
    assert q1 != q2
    r1, r2 = server.fast(server.load_query(q1)), server.fast(server.load_query(q1))
    assert r1 != r2
    assert client.decrypt_ints(r1, server.layout) == client.decrypt_ints(r2, server.layout)


def test_paillier_ciphertext_zero_too_large_or_sharing_a_factor_is_rejected(
    client: PaillierClient,
    setup,  # type: ignore[no-untyped-def]
) -> None:
    """RELIABILITY.md line 3: 0, values >= n^2 and values sharing a factor with n are refused
    (InvalidCiphertextError, which the services answer INVALID_ARGUMENT)."""
    _, _, server, x = setup
    good = client.encrypt(x)
    size = client.ciphertext_bytes
    n, n2 = int(client.n), int(client.n2)
    for bad in (0, n2, n2 + 5, n, 3 * n):
        blob = bad.to_bytes(size + 1, "big")[-size:] if bad < 1 << (8 * size) else b"\xff" * size
        with pytest.raises(InvalidCiphertextError):
            server.load_query([blob, *good[1:]])


def test_truncated_ciphertext_and_wrong_count_are_rejected(client: PaillierClient, setup) -> None:  # type: ignore[no-untyped-def]
    _, _, server, x = setup
    good = client.encrypt(x)
    with pytest.raises(InvalidCiphertextError, match="bytes"):
        server.load_query([good[0][:-1], *good[1:]])
    with pytest.raises(InvalidCiphertextError, match="expected 40"):
        server.load_query(good[:-1])


def test_public_key_under_the_size_floor_is_refused() -> None:
    """RELIABILITY.md line 4: keys under 2048 bits are refused at registration."""
    from phe import paillier

    public, _ = paillier.generate_paillier_keypair(n_length=1024)
    weak = PaillierPublicKey("paillier", 1024, public.n.to_bytes(128, "big"))
    with pytest.raises(InvalidKeyError, match="2048"):
        validate_modulus(weak)
    with pytest.raises(ValueError, match="2048"):
        PaillierClient(1024)


def test_malformed_moduli_are_refused(client: PaillierClient) -> None:
    good = client.public_material()
    n = int.from_bytes(good.n, "big")
    cases = [
        PaillierPublicKey("ckks", 2048, good.n),
        PaillierPublicKey("paillier", 2048, good.n[:-1]),
        PaillierPublicKey("paillier", 2048, (n - 1).to_bytes(256, "big")),  # even
        PaillierPublicKey(
            "paillier",
            2048,
            (n // 3 * 3 + 3 if (n // 3 * 3 + 3) % 2 else n // 3 * 3 + 6).to_bytes(256, "big"),
        ),
        PaillierPublicKey("paillier", 8192, b"\x01" * 1024),
    ]
    prime = gmpy2.next_prime(gmpy2.mpz(n))
    if prime.bit_length() == 2048:
        cases.append(PaillierPublicKey("paillier", 2048, int(prime).to_bytes(256, "big")))
    p = gmpy2.next_prime(gmpy2.mpz(1) << 1023)
    cases.append(PaillierPublicKey("paillier", 2048, int(p * p).to_bytes(256, "big")))  # a square
    small = gmpy2.next_prime(999_983)  # a prime factor below the trial-division bound
    other = gmpy2.next_prime((gmpy2.mpz(1) << 2047) // small + 1)
    cases.append(PaillierPublicKey("paillier", 2048, int(small * other).to_bytes(256, "big")))
    for material in cases:
        with pytest.raises(InvalidKeyError):
            validate_modulus(material)


def _modulus(p: int, q: int) -> PaillierPublicKey:
    n = int(p) * int(q)
    return PaillierPublicKey(
        "paillier", n.bit_length(), n.to_bytes((n.bit_length() + 7) // 8, "big")
    )


@pytest.mark.parametrize("factor_bits", [21, 24])
def test_moduli_with_a_small_factor_are_refused(factor_bits: int) -> None:
    """RELIABILITY.md line 4: a 2048-bit modulus with a 21-bit (or 24-bit) prime factor."""
    small = gmpy2.next_prime(gmpy2.mpz(1) << (factor_bits - 1))
    other = gmpy2.next_prime((gmpy2.mpz(1) << 2047) // small + 1)
    with pytest.raises(InvalidKeyError, match="prime factor below"):
        validate_modulus(_modulus(small, other))


def test_moduli_with_close_factors_are_refused(client: PaillierClient) -> None:
    """RELIABILITY.md line 4: p * nextprime(p), and factors 2^500 apart, fall to Fermat's
    method; a key the library made passes."""
    p = gmpy2.next_prime(gmpy2.mpz(3) << 1022)
    for q in (gmpy2.next_prime(p), gmpy2.next_prime(p + (gmpy2.mpz(1) << 500))):
        with pytest.raises(InvalidKeyError, match="too close"):
            validate_modulus(_modulus(p, q))
    assert validate_modulus(client.public_material()) == client.n


def test_public_material_carries_no_secret(client: PaillierClient) -> None:
    m = client.public_material()
    body = m.n
    for secret in (client._p, client._q):
        s = int(secret).to_bytes(128, "big")
        assert s not in body
    assert int.from_bytes(body, "big") == int(client.n)
    assert gmpy2.mpz(int.from_bytes(body, "big")) == client._p * client._q

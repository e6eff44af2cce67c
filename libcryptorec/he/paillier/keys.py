"""Paillier keys as the server takes them: the scheme's key sizes, the public key, and the checks
that refuse cheap moduli (small or close factors)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np

from libcryptorec.he import backend as api
from libcryptorec.he.errors import InvalidKeyError

SCHEME = "paillier"
# NIST SP 800-57 Part 1: 2048-bit factoring moduli give 112-bit security, 3072-bit give 128.
MIN_KEY_BITS = 2048
MAX_KEY_BITS = 4096
DEFAULT_KEY_BITS = 2048
# A registered modulus must have no prime factor below this bound (checked with one gcd against
# the product of those primes: 24 Mbit, built in 0.8 s once per process, 11 ms a check) and no
# two factors close enough for Fermat's method to find in FERMAT_STEPS steps (|p - q| below
# about sqrt(8 FERMAT_STEPS) n^(1/4), so p * nextprime(p) at the first step). It cannot prove
# n = pq with p, q near 2^(bits/2): that is factoring. It refuses the cheap mistakes and
# forgeries: even or prime moduli, perfect powers, small or close factors. A factor of 30 to
# 100 bits would need the elliptic-curve method (tens of seconds per modulus): not checked;
# it weakens only the registering client's own key.
TRIAL_DIVISION_BOUND = 1 << 24
FERMAT_STEPS = 10_000
Mpz = Any  # gmpy2.mpz has no type stubs


@dataclass(frozen=True)
class PaillierPublicKey:
    """A Paillier public key: the modulus n (g = n + 1). Nothing else leaves the client."""

    scheme: str
    key_bits: int
    n: api.Blob

    @property
    def size(self) -> int:
        return len(self.n)


def to_bytes(value: int, length: int) -> bytes:
    return int(value).to_bytes(length, "big")


@functools.cache
def _small_primes_product() -> Mpz:
    """The product of every prime below TRIAL_DIVISION_BOUND (about 1.4 Mbit), built once."""
    sieve = np.ones(TRIAL_DIVISION_BOUND, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(TRIAL_DIVISION_BOUND**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = False
    values = [gmpy2.mpz(int(p)) for p in np.flatnonzero(sieve)]
    while len(values) > 1:  # balanced product tree: fast multiplication on equal sizes
        pairs = [a * b for a, b in zip(values[::2], values[1::2], strict=False)]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
    return values[0]


def validate_modulus(material: PaillierPublicKey) -> Mpz:
    """Check a registered modulus and return it: declared size within the floor and cap, odd,
    composite (Miller-Rabin), not a perfect power, no prime factor below
    TRIAL_DIVISION_BOUND, no two factors Fermat's method finds in FERMAT_STEPS steps.
    InvalidKeyError otherwise."""
    if material.scheme != SCHEME:
        raise InvalidKeyError(f"keys are for {material.scheme}, not {SCHEME}")
    if not MIN_KEY_BITS <= material.key_bits <= MAX_KEY_BITS:
        raise InvalidKeyError(
            f"Paillier keys must have {MIN_KEY_BITS}..{MAX_KEY_BITS} bits, not {material.key_bits}"
        )
    if len(material.n) != (material.key_bits + 7) // 8:
        raise InvalidKeyError("modulus length does not match the declared key size")
    n = gmpy2.mpz(int.from_bytes(material.n, "big"))
    if n.bit_length() != material.key_bits or n % 2 == 0:
        raise InvalidKeyError("modulus is not an odd number of the declared size")
    if gmpy2.is_prime(n, 40):
        raise InvalidKeyError("modulus is prime: not a product of two primes")
    if gmpy2.is_power(n):
        raise InvalidKeyError("modulus is a perfect power: not an RSA modulus")
    if gmpy2.gcd(n, _small_primes_product()) != 1:
        raise InvalidKeyError(
            f"modulus has a prime factor below {TRIAL_DIVISION_BOUND}: not an RSA modulus"
        )
    if fermat_factor(n, FERMAT_STEPS) is not None:
        raise InvalidKeyError("modulus has two factors too close to each other: not an RSA modulus")
    return n


def fermat_factor(n: Mpz, steps: int) -> Mpz | None:
    """A factor of the odd composite n from Fermat's method (n = a^2 - b^2 for a from
    ceil(sqrt(n)) on, `steps` values of a), or None if none is found."""
    a = gmpy2.isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(steps):
        b2 = a * a - n
        if gmpy2.is_square(b2):
            return a - gmpy2.isqrt(b2)
        a += 1
    return None

"""Parameter sets for SEAL's CKKS and BFV, from an allow-list checked against the security table.

Clients never send a context: both sides build it from a named parameter set defined here, so
no client can pick an insecure ring or an absurd allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

from libcryptorec.he.errors import InsecureParametersError

# Largest total coefficient-modulus bits for 128-bit classical security with ternary secrets:
# HomomorphicEncryption.org security standard (Albrecht et al., 2018), Table 1; SEAL's defaults.
MAX_LOG_Q_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class CkksParams:
    """A CKKS parameter set for the fast-mode circuit.

    Primes are (q0, q1, special): the client encrypts at scale 2^input_bits on limbs q0, q1; the
    first product multiplies by A's diagonals at 2^first_bits and each giant-step partial sum
    is rescaled by q1 before it is rotated, so only the baby-step rotations pay for two limbs;
    the second product (Q's diagonals at 2^second_bits) and the reply live on q0 alone.

    Attributes:
        name: the id clients and the model service use.
        n: polynomial modulus degree; n/2 slots.
        primes: bit sizes of q0, q1 and SEAL's special (key-switching) prime.
        input_bits, first_bits, second_bits: log2 scales of x, of A's and of Q's diagonals.
        headroom_bits: how large (log2) any slot value may get without wrapping.
    """

    name: str
    n: int
    primes: tuple[int, int, int]
    input_bits: int
    first_bits: int
    second_bits: int
    headroom_bits: int = 4

    @property
    def slots(self) -> int:
        return self.n // 2

    @property
    def middle_bits(self) -> int:
        """log2 scale of p after the rescale by q1 (approximately: q1 is not a power of 2)."""
        return self.input_bits + self.first_bits - self.primes[1]

    @property
    def result_bits(self) -> int:
        return self.middle_bits + self.second_bits

    def check(self) -> None:
        """Raise InsecureParametersError unless the set is inside the 128-bit table and coherent."""
        check_security(self.n, self.primes)
        q0, q1, _ = self.primes
        if self.input_bits + self.first_bits + self.headroom_bits >= q0 + q1:
            raise InsecureParametersError(f"{self.name}: first product overflows q0*q1")
        if self.result_bits + self.headroom_bits >= q0:
            raise InsecureParametersError(f"{self.name}: second product overflows q0")
        if self.middle_bits < 20:
            raise InsecureParametersError(f"{self.name}: p would keep under 20 bits of precision")


def check_security(n: int, primes: tuple[int, ...]) -> None:
    """Raise InsecureParametersError if (n, sum of primes) is outside the 128-bit table."""
    if n not in MAX_LOG_Q_128:
        raise InsecureParametersError(f"polynomial degree {n} is not in the security table")
    total = sum(primes)
    if total > MAX_LOG_Q_128[n]:
        raise InsecureParametersError(
            f"log q = {total} bits exceeds {MAX_LOG_Q_128[n]} for n = {n} at 128-bit security"
        )
    if len(primes) < 2 or any(not 20 <= p <= 60 for p in primes):
        raise InsecureParametersError("need >= 2 primes of 20..60 bits (one is the special prime)")


# 160 bits of modulus, well inside the 218 allowed for n = 8192. Measured on ml-1m: one limb
# (2^56 split between x, A and Q) left errors of 7e-3 to 0.2, and rescaling p down to 2^25
# left 7e-3 (the replication sums eight copies of each slot's rescaling noise). Keeping p at
# 2^35 after the rescale brings the error to about 1e-5 while Q (2^20) still fits one limb.
CKKS_FAST_8192 = CkksParams(
    name="ckks-8192-fast",
    n=8192,
    primes=(60, 40, 60),
    input_bits=40,
    first_bits=35,
    second_bits=20,
)

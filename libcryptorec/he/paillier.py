"""Paillier (python-paillier keys, raw gmpy2 arithmetic) for CryptoRec's fast mode.

Everything is fixed point (`he.fixed_point`): x_int = round(x 2^16) and the weights at the bits
of their compression grid, which holds them exactly (or rounded to 12 bits off a grid), so the
decrypted result equals the integer computation b_int + x_int A_int Q_int^T exactly.

Server kernels (Enc is additive: Enc(a)Enc(b) = Enc(a+b), Enc(a)^k = Enc(k a)):
* First product, per output column j (bucket / Pippenger): multiply the inputs that share a
  weight value into one bucket, then fold the buckets from the largest value down with a running
  product S_t, raising it only to the gap w_t - w_{t-1}: sum_t w_t B_t = sum_t (w_t - w_{t-1})
  S_t. Gaps between 512 shared values are small, so this is mostly plain multiplications.
  Negative weights are folded separately and inverted once per column.
* Second product, per input p_j: walk the sorted distinct weights of column j of Q, each power
  from the previous one by its gap (the paper's reuse, as a chain), then multiply each output's
  power in.
* Replies: each result is offset to non-negative, `per_reply` of them are packed into one
  plaintext by Horner with 2^slot_bits, and each reply is re-randomised by a fresh r^n.
The columns (first product) and inputs (second) are split across worker processes.
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
from phe import paillier

from libcryptorec.compression import CompressedModel
from libcryptorec.he import backend as api
from libcryptorec.he.backend import EMPTY, Blobs, KeySet, Options, PreparedModel
from libcryptorec.he.cancel import StopCheck, check, never
from libcryptorec.he.errors import CancelledError, InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.fixed_point import FixedPoint, weight_grid
from libcryptorec.norms import max_image_norm

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
# Resident memory of one bound evaluator: the key and the re-randomisers it keeps (worker
# processes, if any, are processes of their own).
PAILLIER_EVALUATOR_BYTES = 1 << 20
Mpz = Any  # gmpy2.mpz has no type stubs
Kernel = Callable[[range, list[Mpz], Mpz, Callable[[], bool]], list[Mpz]]


@dataclass(frozen=True)
class PaillierEncoding:
    """The client's fixed point, public: inputs at 2^input_bits, within max_abs_input (the
    results' scale comes with the reply layout)."""

    input_bits: int = 16
    max_abs_input: float = 8.0


# Weights off a compression grid are rounded to this many bits.
ROUNDED_WEIGHT_BITS = 12


def fixed_point_for(packed: CompressedModel, encoding: PaillierEncoding) -> FixedPoint:
    """The model's fixed point: the client's input bits, the weights' grid bits (exact) when
    they have a grid, else ROUNDED_WEIGHT_BITS."""
    a, q = weight_grid(packed.A), weight_grid(packed.Q)
    if a is None or q is None:
        return FixedPoint(encoding.input_bits, ROUNDED_WEIGHT_BITS, ROUNDED_WEIGHT_BITS)
    return FixedPoint(encoding.input_bits, a, q, exact=True)


@dataclass(frozen=True)
class PaillierPublicKey:
    """A Paillier public key: the modulus n (g = n + 1). Nothing else leaves the client."""

    scheme: str
    key_bits: int
    n: api.Blob

    @property
    def size(self) -> int:
        return len(self.n)


def _to_bytes(value: int, length: int) -> bytes:
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


class PaillierClient:
    """Holds the private key; encrypts with precomputed randomness, decrypts packed replies."""

    def __init__(
        self,
        key_bits: int = DEFAULT_KEY_BITS,
        encoding: PaillierEncoding | None = None,
        keys: dict[str, bytes] | None = None,
        layout: ReplyLayout | None = None,
    ) -> None:
        """New keys, or the client's own saved `keys` (p and q, from `export_keys`);
        `layout`: how the server packs replies (the default for `decrypt`)."""
        self.layout = layout
        if key_bits < MIN_KEY_BITS:
            raise ValueError(f"Paillier keys below {MIN_KEY_BITS} bits are not offered")
        self.encoding = encoding or PaillierEncoding()
        if keys is not None:
            p, q = (int.from_bytes(keys[k], "big") for k in ("p", "q"))
            public = paillier.PaillierPublicKey(p * q)
            self._private = paillier.PaillierPrivateKey(public, p, q)
        else:
            public, self._private = paillier.generate_paillier_keypair(n_length=key_bits)
        self.key_bits = key_bits
        self.n = gmpy2.mpz(public.n)
        self.n2 = self.n * self.n
        self._p, self._q = gmpy2.mpz(self._private.p), gmpy2.mpz(self._private.q)
        self._pool: list[Mpz] = []

    @property
    def ciphertext_bytes(self) -> int:
        return 2 * ((self.key_bits + 7) // 8)

    def export_keys(self) -> dict[str, bytes]:
        """p and q, for the client's local key cache only."""
        size = (self.key_bits + 15) // 16
        return {"p": int(self._p).to_bytes(size, "big"), "q": int(self._q).to_bytes(size, "big")}

    def public_material(self) -> PaillierPublicKey:
        """The modulus n; never p, q or lambda."""
        return PaillierPublicKey(SCHEME, self.key_bits, _to_bytes(self.n, (self.key_bits + 7) // 8))

    def _random_rn(self) -> Mpz:
        """r^n mod n^2 for a fresh random r, by CRT over p^2 and q^2 (about 4x faster)."""
        p2, q2 = self._p * self._p, self._q * self._q
        while True:
            r = gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1)
            if gmpy2.gcd(r, self.n) == 1:
                break
        a = gmpy2.powmod(r, self.n % (self._p * (self._p - 1)), p2)
        b = gmpy2.powmod(r, self.n % (self._q * (self._q - 1)), q2)
        return (a + p2 * ((b - a) * gmpy2.invert(p2, q2) % q2)) % self.n2

    def precompute(self, count: int) -> None:
        """Offline phase: prepare `count` encryption randomisers r^n (the expensive part)."""
        self._pool.extend(self._random_rn() for _ in range(count))

    def encrypt(self, x: npt.ArrayLike) -> list[bytes]:
        """Online phase: Enc(round(x_i 2^input_bits)) for each entry of the (m,) vector x."""
        values = np.asarray(x, dtype=np.float64)
        limit = self.encoding.max_abs_input
        if values.ndim != 1 or not np.all(np.abs(values) <= limit):
            raise ValueError(f"x must be a vector with |x_i| <= {limit}")
        ints = np.rint(values * 2.0**self.encoding.input_bits).astype(np.int64)
        if len(self._pool) < len(ints):
            self.precompute(len(ints) - len(self._pool))
        pool, self._pool = self._pool[: len(ints)], self._pool[len(ints) :]
        n, n2, size = self.n, self.n2, self.ciphertext_bytes
        return [
            _to_bytes((1 + (int(v) % n) * n) * rn % n2, size)
            for v, rn in zip(ints, pool, strict=True)
        ]

    def public_blobs(self) -> dict[str, bytes]:
        """The key set to register, by blob name: the modulus."""
        return {"modulus": bytes(self.public_material().n)}

    def decrypt(
        self, blobs: list[bytes], layout: ReplyLayout | None = None
    ) -> npt.NDArray[np.float64]:
        """Decrypt packed replies into the (m,) predictions (real numbers)."""
        layout = layout or self.layout
        if layout is None:
            raise ValueError("the reply layout is needed to decrypt")
        if len(blobs) != layout.replies:
            raise InvalidCiphertextError(f"expected {layout.replies} replies, got {len(blobs)}")
        values = np.concatenate([self.decrypt_block(b, layout) for b in blobs])
        return np.asarray(values[: layout.items], dtype=np.float64)

    def decrypt_block(
        self, blob: bytes, layout: ReplyLayout | None = None
    ) -> npt.NDArray[np.float64]:
        """The `per_reply` values one packed reply carries (real numbers)."""
        layout = layout or self.layout
        if layout is None:
            raise ValueError("the reply layout is needed to decrypt")
        c = int.from_bytes(blob, "big")
        if not 0 < c < self.n2:
            raise InvalidCiphertextError("reply out of range")
        packed = int(self._private.raw_decrypt(c))
        mask = (1 << layout.slot_bits) - 1
        ints = np.array(
            [
                ((packed >> (layout.slot_bits * s)) & mask) - layout.offset
                for s in range(layout.per_reply)
            ],
            dtype=object,
        )
        return np.asarray(ints / float(2**layout.result_bits), dtype=np.float64)

    def decrypt_ints(self, blobs: list[bytes], layout: ReplyLayout) -> list[int]:
        """Decrypt packed replies into the exact integer results (for exactness checks)."""
        mask = (1 << layout.slot_bits) - 1
        out: list[int] = []
        for blob in blobs:
            packed = int(self._private.raw_decrypt(int.from_bytes(blob, "big")))
            out.extend(
                ((packed >> (layout.slot_bits * s)) & mask) - layout.offset
                for s in range(layout.per_reply)
            )
        return out[: layout.items]


@dataclass(frozen=True)
class ReplyLayout:
    """How results are packed: `per_reply` slots of `slot_bits`, each holding value + offset,
    the value an integer at 2^result_bits."""

    items: int
    slot_bits: int
    per_reply: int
    result_bits: int

    @property
    def offset(self) -> int:
        return 1 << (self.slot_bits - 1)

    @property
    def replies(self) -> int:
        return -(-self.items // self.per_reply)


def reply_layout(items: int, bound_bits: int, key_bits: int, result_bits: int) -> ReplyLayout:
    """Slots of bound_bits + 1 bits, as many as fit below n."""
    slot_bits = bound_bits + 1
    return ReplyLayout(items, slot_bits, max(1, (key_bits - 2) // slot_bits), result_bits)


@dataclass
class PaillierModel:
    """A compressed model in fixed point, with the index structures the kernels walk."""

    fixed: FixedPoint
    items: int
    dim: int
    A_int: npt.NDArray[np.int64]  # (m, d)
    Q_int: npt.NDArray[np.int64]  # (m, d)
    bias_int: list[int]  # (m,) at 2^result_bits
    bound_bits: int  # |result| < 2^bound_bits for any input the client can send
    A_groups: Groups = field(default_factory=list)  # column groups of A (first product)
    A_row_groups: Groups = field(default_factory=list)  # row groups of A (paper's method)
    Q_groups: Groups = field(default_factory=list)  # column groups of Q (second product)

    @classmethod
    def encode(
        cls,
        packed: CompressedModel,
        encoding: PaillierEncoding = PaillierEncoding(),
        *,
        groups: bool = True,
    ) -> PaillierModel:
        """The codebooks in fixed point (`fixed_point_for`), the result size bounded for
        packing (`result_bound_bits`), and the kernels' index lists (`groups`)."""
        fixed = fixed_point_for(packed, encoding)
        A_int = _integers(packed.A.codebook, fixed.a_bits)[packed.A.indices]
        Q_int = _integers(packed.Q.codebook, fixed.q_bits)[packed.Q.indices]
        bias = np.rint(packed.model.item_bias.astype(np.float64) * 2.0**fixed.result_bits)
        m, d = A_int.shape
        out = cls(
            fixed, m, d, A_int, Q_int, [int(b) for b in bias], cls.result_bound_bits(packed, fixed)
        )
        if groups:  # the kernels' index lists; only the public sizes are needed without them
            out.A_groups = column_groups(A_int)
            out.A_row_groups = column_groups(A_int.T)
            out.Q_groups = column_groups(Q_int)
        return out

    @staticmethod
    def result_bound_bits(packed: CompressedModel, fixed: FixedPoint) -> int:
        """Bits (with a sign) that hold any result: |z_i| <= ||x_int||_2 max_i ||A_int q_i|| +
        |b_i| (`he.fixed_point`), from the integer codebooks and the indices chunk by chunk (no
        integer copy of the matrices: public, cheap, for the spec)."""
        bias = np.rint(packed.model.item_bias.astype(np.float64) * 2.0**fixed.result_bits)
        m = packed.model.n_items
        x_norm_int = packed.model.max_input_norm * 2**fixed.input_bits + math.sqrt(m)
        a_table = _integers(packed.A.codebook, fixed.a_bits).astype(np.float64)
        q_table = _integers(packed.Q.codebook, fixed.q_bits).astype(np.float64)
        image = max_image_norm(
            packed.A.indices, packed.Q.indices, lambda idx: a_table[idx], lambda idx: q_table[idx]
        )
        bound = x_norm_int * image + float(np.abs(bias).max(initial=0.0))
        return math.ceil(math.log2(max(bound, 1.0))) + 1

    @property
    def nbytes(self) -> int:
        """Resident memory: the integer matrices and the kernels' index lists (about 48 bytes
        per listed row: a list slot, an int object, list over-allocation; measured)."""
        listed = sum(
            len(rows)
            for g in (self.A_groups, self.A_row_groups, self.Q_groups)
            for column in g
            for _, rows in column
        )
        return self.A_int.nbytes + self.Q_int.nbytes + 48 * listed + 40 * len(self.bias_int)

    def reply_layout(self, key_bits: int) -> ReplyLayout:
        """Slots of bound_bits + 1 bits, as many as fit below n."""
        return reply_layout(self.items, self.bound_bits, key_bits, self.fixed.result_bits)

    def reference(self, x: npt.ArrayLike) -> list[int]:
        """The exact integer result the encrypted computation must reproduce."""
        xi = np.rint(np.asarray(x, np.float64) * 2.0**self.fixed.input_bits).astype(np.int64)
        p = [int(v) for v in (xi.astype(object) @ self.A_int.astype(object))]
        z = self.Q_int.astype(object) @ np.array(p, dtype=object)
        return [int(b) + int(v) for b, v in zip(self.bias_int, z, strict=True)]


def _integers(codebook: npt.NDArray[np.float32], bits: int) -> npt.NDArray[np.int64]:
    """A codebook's values as integers at 2^bits (exact for a codebook on that grid)."""
    return np.rint(codebook.astype(np.float64) * 2.0**bits).astype(np.int64)


# --- server kernels -------------------------------------------------------------------------

# The model as seen by one worker process of a PaillierEvaluator's pool, set by the pool's
# initialiser in that process (each pool forks its own workers). Code in the evaluator's own
# process never reads it: there the model is passed explicitly.
_WORKER: dict[str, Any] = {}


Groups = list[list[tuple[int, list[int]]]]


def column_groups(W: npt.NDArray[np.int64]) -> Groups:
    """For each column j of the integer matrix W: [(value, rows with that value), ...] over its
    non-zero values, as plain lists (the kernels index Python lists millions of times)."""
    out = []
    for j in range(W.shape[1]):
        w = W[:, j]
        rows = np.flatnonzero(w)
        order = rows[np.argsort(w[rows], kind="stable")]
        values, starts = np.unique(w[order], return_index=True)
        bounds = np.r_[starts, len(order)]
        out.append(
            [(int(v), order[bounds[g] : bounds[g + 1]].tolist()) for g, v in enumerate(values)]
        )
    return out


def bucket_columns(
    cts: list[Mpz], groups: Groups, cols: range, n2: Mpz, should_stop: StopCheck = never
) -> list[Mpz]:
    """Enc(p_j) for j in `cols` by buckets and running products (see module doc)."""
    out = []
    for j in cols:
        check(should_stop)
        buckets: dict[int, Mpz] = {}
        for value, rows in groups[j]:
            acc = gmpy2.mpz(1)
            for i in rows:
                acc = acc * cts[i] % n2
            buckets[value] = acc
        out.append(_fold(buckets, n2))
    return out


def paper_rows(
    cts: list[Mpz], row_groups: Groups, rows: range, d: int, n2: Mpz, should_stop: StopCheck = never
) -> list[Mpz]:
    """The paper's reuse as written: for input i, Enc(x_i)^v once per distinct value v in row
    i of A (one exponentiation each), multiplied into every output that uses it. Returns
    partial products over `rows` for all d outputs."""
    p = [gmpy2.mpz(1)] * d
    for i in rows:
        check(should_stop)
        c, inverse = cts[i], None
        for value, cols in row_groups[i]:
            if value < 0 and inverse is None:
                inverse = gmpy2.invert(c, n2)
            power = gmpy2.powmod(c if value > 0 else inverse, abs(value), n2)
            for j in cols:
                p[j] = p[j] * power % n2
    return p


def _fold(buckets: dict[int, Mpz], n2: Mpz) -> Mpz:
    """prod_v B_v^v over signed integer v, folding from the largest |v| down by gaps."""
    result = gmpy2.mpz(1)
    for sign in (1, -1):
        mags = sorted((abs(v) for v in buckets if v * sign > 0), reverse=True)
        if not mags:
            continue
        running, part = gmpy2.mpz(1), gmpy2.mpz(1)
        for t, mag in enumerate(mags):
            running = running * buckets[sign * mag] % n2
            gap = mag - (mags[t + 1] if t + 1 < len(mags) else 0)
            part = part * (running if gap == 1 else gmpy2.powmod(running, gap, n2)) % n2
        result = result * (part if sign > 0 else gmpy2.invert(part, n2)) % n2
    return result


def _second_inputs(
    ps: list[Mpz], groups: Groups, inputs: range, m: int, n2: Mpz, should_stop: StopCheck = never
) -> list[Mpz]:
    """prod_{j in inputs} Enc(p_j)^{Q_ij} for every item i, by power chains per input j;
    `groups` are the column groups of Q (column j of Q = the weights p_j meets)."""
    z = [gmpy2.mpz(1)] * m
    for j in inputs:
        check(should_stop)
        inverse = None
        for sign in (1, -1):
            mine = [(v, rows) for v, rows in groups[j] if v * sign > 0]
            if sign < 0:
                mine.reverse()  # ascending |v|
                if mine:
                    inverse = gmpy2.invert(ps[j], n2)
            base = ps[j] if sign > 0 else inverse
            prev, cur = 0, gmpy2.mpz(1)
            for value, rows in mine:
                gap = abs(value) - prev
                cur = cur * (base if gap == 1 else gmpy2.powmod(base, gap, n2)) % n2
                prev = abs(value)
                for i in rows:
                    z[i] = z[i] * cur % n2
    return z


def _pack(z: list[Mpz], bias: list[int], start: int, layout: ReplyLayout, n: Mpz) -> list[Mpz]:
    """Pack z[start:start + per_reply] (+ bias + offset) into one plaintext by Horner."""
    n2 = n * n
    shift = gmpy2.mpz(1) << layout.slot_bits
    acc = gmpy2.mpz(1)
    for i in reversed(range(start, min(start + layout.per_reply, layout.items))):
        # Enc(acc * 2^slot + z_i + bias_i + offset); plaintext terms enter as (1 + k n).
        acc = gmpy2.powmod(acc, shift, n2) * z[i - start] % n2
        acc = acc * (1 + (bias[i] + layout.offset) % n * n) % n2
    return [acc]


PackArgs = tuple[list[int], list[Mpz], Mpz, ReplyLayout]


def _pack_group(args: PackArgs, bias: list[int]) -> list[Mpz]:
    """One packed reply per start in args[0], from the z values of those replies' items."""
    starts, z_slices, n, layout = args
    per = layout.per_reply
    return [
        _pack(z_slices[k * per : (k + 1) * per], bias, s, layout, n)[0]
        for k, s in enumerate(starts)
    ]


def _worker_pack(args: PackArgs) -> list[Mpz]:
    return _pack_group(args, _WORKER["model"].bias_int)


def _worker_first(args: tuple[range, list[Mpz], Mpz]) -> list[Mpz]:
    cols, cts, n2 = args
    return bucket_columns(cts, _WORKER["model"].A_groups, cols, n2)


def _worker_first_paper(args: tuple[range, list[Mpz], Mpz]) -> list[Mpz]:
    rows, cts, n2 = args
    model = _WORKER["model"]
    return paper_rows(cts, model.A_row_groups, rows, model.dim, n2)


def _worker_second(args: tuple[range, list[Mpz], Mpz]) -> list[Mpz]:
    inputs, ps, n2 = args
    model = _WORKER["model"]
    return _second_inputs(ps, model.Q_groups, inputs, model.items, n2)


def _init_worker(model: PaillierModel) -> None:
    _WORKER["model"] = model


def _split(count: int, parts: int) -> list[range]:
    edges = np.linspace(0, count, parts + 1).astype(int)
    return [range(edges[k], edges[k + 1]) for k in range(parts) if edges[k] < edges[k + 1]]


class PaillierEvaluator:
    """Server side for one client key: validation and the fast-mode circuit."""

    def __init__(
        self,
        material: PaillierPublicKey,
        model: PaillierModel,
        workers: int = 1,
        method: str = "bucket",
    ) -> None:
        """`method` is "bucket" (default, fastest) or "paper" (the paper's per-row reuse, kept
        to measure the difference)."""
        if method not in ("bucket", "paper"):
            raise ValueError(f"unknown method {method!r}")
        self.method = method
        self.n = validate_modulus(material)
        self.n2 = self.n * self.n
        self.key_bits = material.key_bits
        self.model = model
        self.layout = model.reply_layout(self.key_bits)
        if self.layout.slot_bits * self.layout.per_reply >= self.key_bits:
            raise InvalidKeyError("key too small for the model's result size")
        self.workers = workers
        self.nbytes = PAILLIER_EVALUATOR_BYTES
        self._pool = (
            mp.get_context("fork").Pool(workers, _init_worker, (model,)) if workers > 1 else None
        )
        # close() may come from another thread (a cache evicting this evaluator) while a query
        # runs: the pool then stops when that query is done, not under it.
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False

    def close(self) -> None:
        """Stop the worker processes (now, or when the query in progress is done)."""
        with self._lock:
            self._closed = True
            if self._running:
                return
        self._stop_pool()

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    @property
    def ciphertext_bytes(self) -> int:
        return 2 * ((self.key_bits + 7) // 8)

    def load_query(self, blobs: list[bytes]) -> list[Mpz]:
        """Validate the m input ciphertexts: count, length, 0 < c < n^2, gcd(c, n) = 1."""
        if len(blobs) != self.model.items:
            raise InvalidCiphertextError(
                f"expected {self.model.items} ciphertexts, got {len(blobs)}"
            )
        size = self.ciphertext_bytes
        out = []
        for k, blob in enumerate(blobs):
            if len(blob) != size:
                raise InvalidCiphertextError(f"ciphertext {k}: {len(blob)} bytes, expected {size}")
            c = gmpy2.mpz(int.from_bytes(blob, "big"))
            if not 0 < c < self.n2 or gmpy2.gcd(c, self.n) != 1:
                raise InvalidCiphertextError(f"ciphertext {k} is not in Z*_(n^2)")
            out.append(c)
        return out

    def _run(
        self, local: Kernel, remote: Any, count: int, data: list[Mpz], should_stop: StopCheck
    ) -> list[list[Mpz]]:
        """Run a kernel over `count` units split across the workers. In-process the kernel
        checks `should_stop` per unit (milliseconds); with workers, it is polled every 50 ms and
        a withdrawn request stops the work by restarting the pool."""
        parts = _split(count, self.workers)
        if self.workers == 1:
            return [local(part, data, self.n2, should_stop) for part in parts]
        if self._pool is None:  # terminated by a cancellation: fork a fresh one
            self._pool = mp.get_context("fork").Pool(self.workers, _init_worker, (self.model,))
        pending = self._pool.map_async(remote, [(part, data, self.n2) for part in parts])
        while not pending.ready():
            pending.wait(0.05)
            if should_stop():
                self._stop_pool()  # the workers stop at once; the next query forks new ones
                raise CancelledError("request withdrawn; computation stopped")
        return list(pending.get())

    def fast(self, query: list[Mpz], should_stop: StopCheck = never) -> list[bytes]:
        """Fast mode: packed, re-randomised Enc(b + x A Q^T) replies."""
        with self._lock:
            if self._closed:
                raise RuntimeError("evaluator closed")
            self._running += 1
        try:
            return self._fast(query, should_stop)
        finally:
            with self._lock:
                self._running -= 1
                stop = self._closed and not self._running
            if stop:
                self._stop_pool()

    def _fast(self, query: list[Mpz], should_stop: StopCheck) -> list[bytes]:
        n, n2, model = self.n, self.n2, self.model

        def product(parts: list[list[Mpz]]) -> list[Mpz]:
            out = parts[0]
            for other in parts[1:]:
                out = [a * b % n2 for a, b in zip(out, other, strict=True)]
            return out

        def first(part: range, data: list[Mpz], mod: Mpz, stop: StopCheck) -> list[Mpz]:
            return bucket_columns(data, model.A_groups, part, mod, stop)

        def paper(part: range, data: list[Mpz], mod: Mpz, stop: StopCheck) -> list[Mpz]:
            return paper_rows(data, model.A_row_groups, part, model.dim, mod, stop)

        def second(part: range, data: list[Mpz], mod: Mpz, stop: StopCheck) -> list[Mpz]:
            return _second_inputs(data, model.Q_groups, part, model.items, mod, stop)

        if self.method == "bucket":  # columns split across workers: concatenate
            parts = self._run(first, _worker_first, model.dim, query, should_stop)
            ps = [c for part in parts for c in part]
        else:  # rows split across workers: partial products, multiplied together
            ps = product(self._run(paper, _worker_first_paper, model.items, query, should_stop))
        z = product(self._run(second, _worker_second, model.dim, ps, should_stop))
        layout = self.layout
        starts = list(range(0, layout.items, layout.per_reply))
        groups = [starts[k :: self.workers] for k in range(self.workers)]
        per = layout.per_reply
        args = [(g, [c for s in g for c in z[s : s + per]], n, layout) for g in groups if g]
        packed_parts = (
            [_pack_group(a, model.bias_int) for a in args]
            if self._pool is None
            else list(self._pool.map(_worker_pack, args))
        )
        by_start = {
            s: c
            for a, part in zip(args, packed_parts, strict=True)
            for s, c in zip(a[0], part, strict=True)
        }
        rns = [self._randomiser() for _ in starts]
        return [
            _to_bytes(by_start[s] * rn % n2, self.ciphertext_bytes)
            for s, rn in zip(starts, rns, strict=True)
        ]

    def _randomiser(self) -> Mpz:
        """A fresh r^n mod n^2 (the server has no factorisation: a full exponentiation)."""
        return gmpy2.powmod(gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1), self.n, self.n2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


class PaillierFastBackend(api.Backend):
    """Paillier fast mode (2048-bit keys): fixed point, exact up to rounding (within 1e-2 of
    the plaintext model); the server's work shrinks with every pruned weight."""

    scheme, mode, wire = "paillier", "fast", (3, 1)
    tolerance = 1e-2
    nominal_seconds = 6.9  # README: ml-1m stars model, 2 cores
    key_blob_names = ("modulus",)
    key_bits = DEFAULT_KEY_BITS
    options = (
        api.Option(
            "paillier_workers",
            "1",
            "worker processes per Paillier query (HE work holds the GIL)",
            _positive_int,
        ),
    )

    @property
    def parameter_set(self) -> str:
        return f"paillier-{self.key_bits}"

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        fixed, m = fixed_point_for(packed, PaillierEncoding()), packed.model.n_items
        bound_bits = PaillierModel.result_bound_bits(packed, fixed)
        layout = reply_layout(m, bound_bits, self.key_bits, fixed.result_bits)
        return api.SchemeSpec(
            self.scheme,
            self.mode,
            self.parameter_set,
            m,
            packed.model.dim,
            input_bits=fixed.input_bits,
            result_bits=fixed.result_bits,
            reply_slot_bits=layout.slot_bits,
            reply_per_ciphertext=layout.per_reply,
            ciphertexts_per_query=m,
        )

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> api.VectorClient:
        layout = ReplyLayout(
            spec.items, spec.reply_slot_bits, spec.reply_per_ciphertext, spec.result_bits
        )
        encoding = PaillierEncoding(input_bits=spec.input_bits)
        return api.VectorClient(
            spec, inputs, PaillierClient(self.key_bits, encoding, keys=keys, layout=layout)
        )

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        api.unsharded(self, blocks)
        return api.PreparedModel(spec, PaillierModel.encode(packed))

    def public_key(self, keys: api.KeySet, blobs: Mapping[str, api.Blob]) -> PaillierPublicKey:
        self.check_keys_for(keys)
        return PaillierPublicKey(SCHEME, self.key_bits, self.blob(blobs, "modulus"))

    def validate_keys(self, keys: api.KeySet, blobs: Mapping[str, api.Blob]) -> None:
        validate_modulus(self.public_key(keys, blobs))

    def bind(
        self, prepared: PreparedModel, keys: KeySet, blobs: Blobs, options: Options = EMPTY
    ) -> api.Bound:
        workers = self.option_value(options, "paillier_workers")
        evaluator = PaillierEvaluator(self.public_key(keys, blobs), prepared.encoded, workers)

        def run(ciphertexts: list[bytes], should_stop: StopCheck) -> list[bytes]:
            return evaluator.fast(evaluator.load_query(ciphertexts), should_stop)

        return api.BoundEvaluator(prepared.spec, run, evaluator.nbytes, evaluator.close)

    def key_set_cap(self) -> int:
        return (MAX_KEY_BITS + 7) // 8

    def query_bytes(self, spec: api.SchemeSpec) -> int:
        return spec.ciphertexts_per_query * 2 * ((MAX_KEY_BITS + 7) // 8)

    def bound_bytes(self, spec: api.SchemeSpec, key_set_bytes: int) -> int:
        return PAILLIER_EVALUATOR_BYTES

    def items_per_reply(self, spec: api.SchemeSpec) -> int:
        return spec.reply_per_ciphertext


BACKEND = PaillierFastBackend()

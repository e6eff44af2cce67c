"""The server's Paillier kernels: the model as integers grouped for the bucket method, the first
and second products across worker processes, packing and re-randomising the replies."""

from __future__ import annotations

import math
import multiprocessing as mp
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt

from libcryptorec.compression import CompressedModel
from libcryptorec.he.cancel import StopCheck, check, never
from libcryptorec.he.errors import CancelledError, InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.fixed_point import FixedPoint
from libcryptorec.he.paillier.encoding import (
    PaillierEncoding,
    ReplyLayout,
    fixed_point_for,
    reply_layout,
)
from libcryptorec.he.paillier.keys import Mpz, PaillierPublicKey, to_bytes, validate_modulus
from libcryptorec.norms import max_image_norm

# Resident memory of one bound evaluator: the key and the re-randomisers it keeps (worker
# processes, if any, are processes of their own).
PAILLIER_EVALUATOR_BYTES = 1 << 20
Kernel = Callable[[range, list[Mpz], Mpz, Callable[[], bool]], list[Mpz]]


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
            to_bytes(by_start[s] * rn % n2, self.ciphertext_bytes)
            for s, rn in zip(starts, rns, strict=True)
        ]

    def _randomiser(self) -> Mpz:
        """A fresh r^n mod n^2 (the server has no factorisation: a full exponentiation)."""
        return gmpy2.powmod(gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1), self.n, self.n2)

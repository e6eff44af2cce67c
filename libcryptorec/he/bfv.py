"""BFV (SEAL via Pyfhel) fast mode: integer-quantised weights, exact results.

The same slot layout and kernels as CKKS (`layout`, `ckks.first_product`, `ckks.giant_steps`)
over Z_t, in the fixed point of `he.fixed_point`: the decrypted integers equal
b_int + x_int A_int Q_int^T exactly as long as every result stays inside (-t/2, t/2), and the
weights, on their compression grid, are held exactly when t has the room.

Parameters: n = 8192, t a 42-bit batching prime, SEAL's 218-bit default modulus for 128-bit
security. Each bit of t costs about three bits of noise budget; measured on ml-1m models (the
budget left in a reply, `Pyfhel.noise_level`): t = 2^40 left 22 bits (d = 128) and 21 (d = 500),
2^42 17 and 15, 2^45 7 and 6, 2^48 none (garbage). There is no 43- or 44-bit batching prime for
n = 8192. At 2^40 the ranking model's x and weights got 12 and 10 bits, and its decrypted top 10
differed from the plaintext one for about 1% of users; at 2^42 with exact weights, for none of
200.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from Pyfhel import PyCtxt, Pyfhel

from libcryptorec.compression import CompressedModel
from libcryptorec.he import backend as api
from libcryptorec.he import seal
from libcryptorec.he.errors import InvalidCiphertextError
from libcryptorec.he.fixed_point import FixedPoint, choose
from libcryptorec.he.layout import DiagonalPlan
from libcryptorec.he.params import check_security
from libcryptorec.model import CryptoRecModel

SCHEME = "bfv"


@dataclass(frozen=True)
class BfvParams:
    """An allow-listed BFV parameter set."""

    # The name changes with t: keys made for another t would decrypt to garbage.
    name: str = "bfv-8192-t42"
    n: int = 8192
    t_bits: int = 42
    primes: tuple[int, ...] = (43, 43, 44, 44, 44)  # SEAL's 128-bit default for n = 8192

    @property
    def slots(self) -> int:
        return self.n // 2  # one row of SEAL's 2 x n/2 batching matrix

    def check(self) -> None:
        check_security(self.n, self.primes)


BFV_8192 = BfvParams()


def _context(params: BfvParams) -> Pyfhel:
    return seal.new_context(SCHEME, params.n, params.primes, t_bits=params.t_bits)


def _row(values: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """Fill the first batching row with `values`; the second row stays zero."""
    out = np.zeros(n, dtype=np.int64)
    v = np.asarray(values, dtype=np.int64)
    out[: len(v)] = v
    return out


@dataclass
class BfvModel:
    """Integer diagonals and biases for the item blocks `blocks` (a shard, or all of them),
    and the fixed-point split chosen for this model."""

    params: BfvParams
    plan: DiagonalPlan
    blocks: range
    fixed: FixedPoint
    bias_int: npt.NDArray[np.int64]  # (len(blocks) * slots,) the shard's padded biases
    first: seal.Diagonals
    second: seal.Diagonals

    @property
    def nbytes(self) -> int:
        """Resident memory: one word per coefficient per plaintext, and the biases."""
        n = self.params.n
        return (
            seal.diagonals_bytes(self.first, n, 1)
            + seal.diagonals_bytes(self.second, n, 1)
            + self.bias_int.nbytes
        )

    @staticmethod
    def fixed_point(model: CryptoRecModel, params: BfvParams = BFV_8192) -> FixedPoint:
        """Scales such that no result can reach t/2: public, cheap."""
        # t is just under 2^t_bits, and results are signed: t_bits - 2 bits of magnitude.
        try:
            return choose(model, params.t_bits - 2)
        except ValueError as exc:
            raise ValueError(f"{params.name}: {exc}") from None

    @classmethod
    def encode(
        cls, model: CryptoRecModel, params: BfvParams = BFV_8192, blocks: range | None = None
    ) -> BfvModel:
        """Quantise A, Q, b to integers that cannot overflow t, and encode their diagonals
        for the item blocks `blocks` (default: all)."""
        he = _context(params)
        plan = DiagonalPlan.for_model(params.slots, model.n_items, model.dim)
        blocks = range(plan.blocks) if blocks is None else blocks
        fixed = cls.fixed_point(model, params)
        rows = slice(blocks.start * plan.slots, blocks.stop * plan.slots)
        # Only the shard's rows: the blocks' diagonals read nothing else.
        A_int = np.rint(model.A[rows].astype(np.float64) * 2.0**fixed.a_bits)
        Q_int = np.rint(model.Q[rows].astype(np.float64) * 2.0**fixed.q_bits)
        sub = DiagonalPlan(plan.slots, A_int.shape[0], plan.width, plan.baby)
        bias = np.rint(model.item_bias.astype(np.float64) * 2.0**fixed.result_bits)

        def encode(diags: npt.NDArray[np.float64]) -> seal.Diagonals:
            return [
                [
                    [
                        he.encodeInt(_row(np.rint(d), params.n)) if np.any(np.rint(d)) else None
                        for d in row
                    ]
                    for row in block
                ]
                for block in diags
            ]

        return cls(
            params=params,
            plan=plan,
            blocks=blocks,
            fixed=fixed,
            bias_int=plan.pad_items(bias)[blocks.start : blocks.stop].ravel().astype(np.int64),
            first=seal.per_block(
                range(len(blocks)), lambda run: encode(sub.first_diagonals(A_int, run))
            ),
            second=seal.per_block(
                range(len(blocks)), lambda run: encode(sub.second_diagonals(Q_int, run))
            ),
        )


class BfvClient(seal.SealClientKeys):
    """Holds the secret key; encrypts fixed-point inputs and decrypts exact integers."""

    scheme = SCHEME

    def __init__(
        self,
        params: BfvParams,
        plan: DiagonalPlan,
        input_bits: int,
        result_bits: int,
        keys: dict[str, bytes] | None = None,
    ) -> None:
        """New keys, or the client's own saved `keys` (from `export_keys`)."""
        self.params, self.plan = params, plan
        self.input_bits, self.result_bits = input_bits, result_bits
        self._he = _context(self.params)
        seal.make_or_load_keys(self._he, self.plan, keys)

    def encrypt(self, x: npt.ArrayLike) -> list[bytes]:
        """Encrypt round(x 2^input_bits) as `plan.blocks` ciphertexts."""
        xi = np.rint(np.asarray(x, np.float64) * 2.0**self.input_bits)
        return [
            self._he.encryptInt(_row(b, self.params.n)).to_bytes(compr_mode="none")
            for b in self.plan.pad_items(xi)
        ]

    def decrypt_ints(self, blobs: list[bytes]) -> npt.NDArray[np.int64]:
        """The exact (m,) integer results."""
        if len(blobs) != self.plan.blocks:
            raise InvalidCiphertextError(f"expected {self.plan.blocks} reply blocks")
        rows = [self._block_ints(b) for b in blobs]
        return np.concatenate(rows)[: self.plan.items].astype(np.int64)

    def _block_ints(self, blob: bytes) -> npt.NDArray[np.int64]:
        limbs = len(self.params.primes) - 1
        ct = seal.load_ciphertext(self._he, blob, limbs=limbs, scale=1.0)
        return np.asarray(self._he.decryptInt(ct), dtype=np.int64)[: self.plan.slots]

    def decrypt(self, blobs: list[bytes]) -> npt.NDArray[np.float64]:
        """The (m,) predictions minus rbar, as real numbers."""
        return self.decrypt_ints(blobs) / 2.0**self.result_bits

    def decrypt_block(self, blob: bytes) -> npt.NDArray[np.float64]:
        """The n/2 values of one reply block, as real numbers."""
        return self._block_ints(blob) / 2.0**self.result_bits


class BfvEvaluator(seal.FastKernel):
    """Server side of BFV fast mode for one client's keys."""

    rescale = False  # BFV has no rescaling; the modulus holds both products

    def __init__(self, material: seal.SealPublicKeys, params: BfvParams = BFV_8192) -> None:
        self.params = params
        super().__init__(_context(params), material, name=params.name, limbs=len(params.primes))

    def load_query(self, blobs: list[bytes], shard: BfvModel) -> list[PyCtxt]:
        """Validate the client's input blocks for `shard`: count, then each as
        `seal.load_ciphertext` does."""
        self.expect_blocks(blobs, shard)
        limbs = len(self.params.primes) - 1
        return [seal.load_ciphertext(self._he, b, limbs=limbs, scale=1.0) for b in blobs]

    def load_partial(self, blob: bytes) -> PyCtxt:
        return load_partial(self._he, blob, self.params)

    def finish(self, z: PyCtxt, shard: BfvModel, block: int) -> bytes:
        he, slots = self._he, shard.plan.slots
        bias = shard.bias_int[block * slots : (block + 1) * slots]
        he.add_plain(z, he.encodeInt(_row(bias, self.params.n)))
        he.add(z, he.encryptInt(np.zeros(self.params.n, dtype=np.int64)))  # re-randomise
        return bytes(z.to_bytes(compr_mode="none"))


def load_partial(he: Pyfhel, blob: bytes, params: BfvParams = BFV_8192) -> PyCtxt:
    """A partial first product: a ciphertext of every data limb."""
    return seal.load_ciphertext(he, blob, limbs=len(params.primes) - 1, scale=1.0)


class BfvFastBackend(seal.FastSealBackend):
    """BFV fast mode: the CKKS layout over integers (n = 8192, t a 42-bit prime); exact up to
    the fixed-point rounding of the input (and of the weights, for a model off its grid),
    within 1e-2 of the plaintext model."""

    scheme, mode, wire = "bfv", "fast", (2, 1)
    tolerance = 1e-2
    nominal_seconds = 2.4  # README: ml-1m stars model, 2 cores
    key_blob_names = ("public_key", "rotation_keys")
    reply_limbs = len(BFV_8192.primes) - 1  # BFV replies keep every data limb
    params = BFV_8192

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        fixed = BfvModel.fixed_point(packed.model, self.params)
        return self.plan_spec(
            packed,
            self.params.slots,
            input_bits=fixed.input_bits,
            result_bits=fixed.result_bits,
        )

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> api.VectorClient:
        kernel = BfvClient(self.params, spec.plan(), spec.input_bits, spec.result_bits, keys)
        return api.VectorClient(spec, inputs, kernel)

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        return api.PreparedModel(spec, BfvModel.encode(packed.model, self.params, blocks))

    def load(self, public: seal.SealPublicKeys) -> BfvEvaluator:
        return BfvEvaluator(public, self.params)

    def context(self) -> Pyfhel:
        return _context(self.params)

    def load_partial(self, he: Pyfhel, blob: bytes) -> PyCtxt:
        return load_partial(he, blob, self.params)


BACKEND = BfvFastBackend()

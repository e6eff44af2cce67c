"""CKKS (SEAL via Pyfhel) for CryptoRec's fast mode: client keys and encryption, server kernel.

The client packs x in slots (blocks of n/2 when there are more items than slots). The server
runs the two diagonal products of `layout.DiagonalPlan` by item shards (`seal.FastKernel`),
rescaling the first product's partial sums once (see `params.CKKS_FAST_8192`), adds the item
biases and re-randomises each reply block with a fresh encryption of zero. Each reply block is
one single-limb ciphertext carrying n/2 predictions.

Circuit privacy: re-randomising hides which ciphertext the reply came from but not the noise
of the computation. Full noise flooding needs about 40 more bits of modulus than fast mode
uses; a deployment that must hide the model beyond its outputs should use the Paillier
backend, whose re-randomised replies reveal only the result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from Pyfhel import PyCtxt, Pyfhel

from libcryptorec.compression import CompressedModel
from libcryptorec.he import backend as api
from libcryptorec.he import seal
from libcryptorec.he.errors import InvalidCiphertextError
from libcryptorec.he.layout import DiagonalPlan
from libcryptorec.he.params import CKKS_FAST_8192, CkksParams

SCHEME = "ckks"


def _context(params: CkksParams) -> Pyfhel:
    """A Pyfhel holding only the SEAL context for `params` (checked, never from a client)."""
    params.check()  # the coherence of scales and primes, beyond the security table
    with warnings.catch_warnings():
        # Pyfhel warns that these primes "do not support rescaling": fast mode never rescales.
        warnings.simplefilter("ignore", UserWarning)
        return seal.new_context(SCHEME, params.n, params.primes, scale=2.0**params.input_bits)


class CkksClient(seal.SealClientKeys):
    """Holds the secret key; encrypts rating vectors and decrypts predictions."""

    scheme = SCHEME

    def __init__(
        self, params: CkksParams, plan: DiagonalPlan, keys: dict[str, bytes] | None = None
    ) -> None:
        """New keys, or the client's own saved `keys` (from `export_keys`)."""
        if plan.slots != params.slots:
            raise ValueError(f"plan has {plan.slots} slots; {params.name} has {params.slots}")
        self.params, self.plan = params, plan
        self._he = _context(params)
        seal.make_or_load_keys(self._he, plan, keys)

    def encrypt(self, x: npt.ArrayLike) -> list[bytes]:
        """Encrypt the (m,) input vector as `plan.blocks` serialized ciphertexts."""
        blocks = self.plan.pad_items(np.asarray(x, dtype=np.float64))
        if blocks.ndim != 2:
            raise ValueError("x must be a vector of one value per item")
        scale = 2.0**self.params.input_bits
        return [
            self._he.encryptFrac(np.ascontiguousarray(b), scale=scale).to_bytes(compr_mode="none")
            for b in blocks
        ]

    def decrypt(self, blobs: list[bytes]) -> npt.NDArray[np.float64]:
        """Decrypt reply blocks into the (m,) prediction vector."""
        if len(blobs) != self.plan.blocks:
            raise InvalidCiphertextError(
                f"expected {self.plan.blocks} reply blocks, got {len(blobs)}"
            )
        return np.concatenate([self.decrypt_block(b) for b in blobs])[: self.plan.items]

    def decrypt_block(self, blob: bytes) -> npt.NDArray[np.float64]:
        """The n/2 values of one reply block."""
        ct = seal.load_ciphertext(self._he, blob, limbs=1, scale=None)
        return np.asarray(self._he.decryptFrac(ct), dtype=np.float64)


class CkksEvaluator(seal.FastKernel):
    """Server side for one client: validated public material and the fast-mode circuit."""

    rescale = True  # the first product's partial sums drop a limb before their rotations

    def __init__(self, params: CkksParams, material: seal.SealPublicKeys) -> None:
        self.params = params
        super().__init__(_context(params), material, name=params.name, limbs=len(params.primes))

    def load_query(self, blobs: list[bytes], shard: CkksModel) -> list[PyCtxt]:
        """Validate the client's input blocks for `shard`: count, then each as
        `seal.load_ciphertext` does."""
        self.expect_blocks(blobs, shard)
        scale = 2.0**self.params.input_bits
        return [seal.load_ciphertext(self._he, b, limbs=2, scale=scale) for b in blobs]

    def load_partial(self, blob: bytes) -> PyCtxt:
        return load_partial(self._he, blob)

    def finish(self, z: PyCtxt, shard: CkksModel, block: int) -> bytes:
        he = self._he
        bias = he.encodeFrac(shard.bias[block], scale=z.scale)
        he.mod_switch_to_next(bias)
        he.add_plain(z, bias)
        # Fresh Enc(0): replies are unlinkable to the computation's ciphertexts.
        zero = he.encryptFrac(np.zeros(shard.plan.slots), scale=z.scale)
        he.mod_switch_to_next(zero)
        he.add(z, zero)
        return bytes(z.to_bytes(compr_mode="none"))


def load_partial(he: Pyfhel, blob: bytes) -> PyCtxt:
    """A partial first product: one limb (rescaled), at whatever finite scale it has (every
    shard's is the same, which adding them checks)."""
    return seal.load_ciphertext(he, blob, limbs=1, scale=None)


@dataclass
class CkksModel:
    """A model's diagonals and biases for the item blocks `blocks` (a shard, or all of them),
    encoded once per (model version, parameter set, shard)."""

    params: CkksParams
    plan: DiagonalPlan
    blocks: range
    first: seal.Diagonals
    second: seal.Diagonals
    bias: list[npt.NDArray[np.float64]]

    @property
    def nbytes(self) -> int:
        """Resident memory of the encoding (both products at two limbs' capacity)."""
        n, limbs = self.params.n, len(self.params.primes) - 1
        return (
            seal.diagonals_bytes(self.first, n, limbs)
            + seal.diagonals_bytes(self.second, n, limbs)
            + sum(b.nbytes for b in self.bias)
        )

    @classmethod
    def encode(
        cls,
        params: CkksParams,
        A: npt.NDArray[Any],
        Q: npt.NDArray[Any],
        item_bias: npt.NDArray[Any],
        baby: int | None = None,
        blocks: range | None = None,
    ) -> CkksModel:
        """Encode A's and Q's diagonals at their scales and b at the result scale, for the
        item blocks `blocks` (default: all)."""
        plan = DiagonalPlan.for_model(params.slots, A.shape[0], A.shape[1], baby)
        blocks = range(plan.blocks) if blocks is None else blocks
        he = _context(params)
        return cls(
            params=params,
            plan=plan,
            blocks=blocks,
            first=seal.per_block(
                blocks,
                lambda run: seal.encode_diagonals(
                    he, plan.first_diagonals(A, run), 2.0**params.first_bits, level=0
                ),
            ),
            second=seal.per_block(
                blocks,
                lambda run: seal.encode_diagonals(
                    he, plan.second_diagonals(Q, run), 2.0**params.second_bits, level=1
                ),
            ),
            bias=[
                np.ascontiguousarray(b)
                for b in plan.pad_items(item_bias)[blocks.start : blocks.stop]
            ],
        )


class CkksFastBackend(seal.FastSealBackend):
    """CKKS fast mode: Enc(x) in, Enc(b + x A Q^T) out, at n = 8192 with primes (60, 40 | 60)
    (`params.CKKS_FAST_8192`); approximate, within 1e-3 of the plaintext model."""

    scheme, mode, wire = "ckks", "fast", (1, 1)
    tolerance = 1e-3
    nominal_seconds = 0.25  # README: ml-1m stars model, 2 cores
    key_blob_names = ("public_key", "rotation_keys")
    reply_limbs = 1  # the reply is switched down to the last data limb
    params = CKKS_FAST_8192

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        return self.plan_spec(packed, self.params.slots)

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> api.VectorClient:
        return api.VectorClient(spec, inputs, CkksClient(self.params, spec.plan(), keys))

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        m = packed.model
        encoded = CkksModel.encode(self.params, m.A, m.Q, m.item_bias, blocks=blocks)
        return api.PreparedModel(spec, encoded)

    def load(self, public: seal.SealPublicKeys) -> CkksEvaluator:
        return CkksEvaluator(self.params, public)

    def context(self) -> Pyfhel:
        return _context(self.params)

    def load_partial(self, he: Pyfhel, blob: bytes) -> PyCtxt:
        return load_partial(he, blob)


BACKEND = CkksFastBackend()

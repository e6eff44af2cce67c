"""CKKS (SEAL via Pyfhel) for CryptoRec's fast mode: client keys and encryption, server kernel.

The client packs x in slots (blocks of n/2 when there are more items than slots). The server
runs the two diagonal products of `layout.DiagonalPlan` with no rescaling (see
`params.CKKS_FAST_8192`), adds the item biases and re-randomises each reply block with a fresh
encryption of zero. Each reply block is one single-limb ciphertext carrying n/2 predictions.

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
from libcryptorec.he.cancel import StopCheck, never
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


class CkksClient:
    """Holds the secret key; encrypts rating vectors and decrypts predictions."""

    def __init__(
        self, params: CkksParams, plan: DiagonalPlan, keys: dict[str, bytes] | None = None
    ) -> None:
        """New keys, or the client's own saved `keys` (from `export_keys`)."""
        if plan.slots != params.slots:
            raise ValueError(f"plan has {plan.slots} slots; {params.name} has {params.slots}")
        self.params, self.plan = params, plan
        self._he = _context(params)
        seal.make_or_load_keys(self._he, plan, keys)

    def export_keys(self) -> dict[str, bytes]:
        """All keys, the secret one included, for the client's local key cache."""
        return seal.export_all_keys(self._he, relin=False)

    def public_material(self) -> seal.SealPublicKeys:
        """Serialized public and Galois keys; never the secret key."""
        return seal.export_public(self._he, SCHEME, self.params.name, self.plan)

    def public_blobs(self) -> dict[str, bytes]:
        """The key set to register, by blob name."""
        return self.public_material().blobs()

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
        values = [
            self._he.decryptFrac(seal.load_ciphertext(self._he, blob, limbs=1, scale=None))
            for blob in blobs
        ]
        return np.concatenate(values)[: self.plan.items]


class CkksEvaluator(seal.SealEvaluator):
    """Server side for one client: validated public material and the fast-mode circuit."""

    def __init__(self, params: CkksParams, material: seal.SealPublicKeys) -> None:
        self.params = params
        super().__init__(_context(params), material, name=params.name, limbs=len(params.primes))

    def load_query(self, blobs: list[bytes], plan: DiagonalPlan) -> list[PyCtxt]:
        """Validate the client's input blocks: count, then each as `seal.load_ciphertext` does."""
        if len(blobs) != plan.blocks:
            raise InvalidCiphertextError(f"expected {plan.blocks} input blocks, got {len(blobs)}")
        scale = 2.0**self.params.input_bits
        return [seal.load_ciphertext(self._he, b, limbs=2, scale=scale) for b in blobs]

    def fast(
        self, query: list[PyCtxt], model: CkksModel, should_stop: StopCheck = never
    ) -> list[bytes]:
        """Fast mode: serialized Enc(b + (x A) Q^T) blocks for the validated `query`."""
        seal.require_rotations(self.rotation_steps, model.plan)
        he, plan = self._he, model.plan
        p_rep = seal.first_product(he, query, model.first, plan, should_stop=should_stop)
        rotated = seal.baby_steps(he, p_rep, plan, should_stop)
        out = []
        for c in range(plan.blocks):
            z = seal.giant_steps(
                he, [rotated], [model.second[c]], plan, rescale=False, should_stop=should_stop
            )
            bias = he.encodeFrac(model.bias[c], scale=z.scale)
            he.mod_switch_to_next(bias)
            he.add_plain(z, bias)
            # Fresh Enc(0): replies are unlinkable to the computation's ciphertexts.
            zero = he.encryptFrac(np.zeros(plan.slots), scale=z.scale)
            he.mod_switch_to_next(zero)
            he.add(z, zero)
            out.append(z.to_bytes(compr_mode="none"))
        return out


@dataclass
class CkksModel:
    """A model's diagonals and biases encoded once per (model version, parameter set)."""

    params: CkksParams
    plan: DiagonalPlan
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
    ) -> CkksModel:
        """Encode A's and Q's diagonals at their scales and b at the result scale."""
        plan = DiagonalPlan.for_model(params.slots, A.shape[0], A.shape[1], baby)
        he = _context(params)

        return cls(
            params=params,
            plan=plan,
            first=seal.encode_diagonals(
                he, plan.first_diagonals(A), 2.0**params.first_bits, level=0
            ),
            second=seal.encode_diagonals(
                he, plan.second_diagonals(Q), 2.0**params.second_bits, level=1
            ),
            bias=[np.ascontiguousarray(b) for b in plan.pad_items(item_bias)],
        )


class CkksFastBackend(seal.SealBackend):
    """CKKS fast mode: Enc(x) in, Enc(b + x A Q^T) out, at n = 8192 with primes (60, 40 | 60)
    (`params.CKKS_FAST_8192`); approximate, within 1e-3 of the plaintext model."""

    scheme, mode, wire = "ckks", "fast", (1, 1)
    tolerance = 1e-3
    key_blob_names = ("public_key", "rotation_keys")
    params = CKKS_FAST_8192

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        return self.plan_spec(packed, self.params.slots)

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> api.VectorClient:
        return api.VectorClient(spec, inputs, CkksClient(self.params, spec.plan(), keys))

    def prepare(self, packed: CompressedModel, spec: api.SchemeSpec) -> api.PreparedModel:
        m = packed.model
        return api.PreparedModel(spec, CkksModel.encode(self.params, m.A, m.Q, m.item_bias))

    def load(self, public: seal.SealPublicKeys) -> CkksEvaluator:
        return CkksEvaluator(self.params, public)


BACKEND = CkksFastBackend()

"""A toy backend, NOT encryption: a "ciphertext" is the plain float64 vector behind a random
nonce. It exists to show that a new backend is one module plus its registration: the backend
contract and the services run it with no edit anywhere else (tests/test_toy_backend.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.compression import CompressedModel
from libcryptorec.he import backend as api
from libcryptorec.he.cancel import StopCheck, check
from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError

NONCE = 16


def _pack(values: npt.ArrayLike) -> bytes:
    return os.urandom(NONCE) + np.asarray(values, dtype="<f8").tobytes()


def _unpack(blob: bytes, items: int) -> npt.NDArray[np.float64]:
    if len(blob) != NONCE + 8 * items:
        raise InvalidCiphertextError(f"a toy ciphertext holds {items} values")
    values = np.frombuffer(blob, dtype="<f8", offset=NONCE)
    if not np.all(np.isfinite(values)):
        raise InvalidCiphertextError("values must be finite")
    return values


@dataclass
class ToyClient:
    spec: api.SchemeSpec
    inputs: api.ClientInputs
    token: bytes

    def key_blobs(self) -> dict[str, bytes]:
        return {"token": self.token}

    def export_keys(self) -> dict[str, bytes]:
        return {"token": self.token}

    def encrypt(self, ratings: sp.csr_matrix) -> tuple[list[bytes], float]:
        X, means = self.inputs.user_inputs(ratings)
        return [_pack(X.toarray().ravel())], float(means[0])

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]:
        return np.concatenate([_unpack(r, self.spec.items) for r in replies])

    def decrypt_part(self, replies: list[bytes], count: int) -> npt.NDArray[np.float64]:
        return api.decrypt_part(lambda r: _unpack(r, self.spec.items), replies, count)


@dataclass
class ToyModel:
    A: npt.NDArray[Any]
    Q: npt.NDArray[Any]
    bias: npt.NDArray[Any]

    @property
    def nbytes(self) -> int:
        return int(self.A.nbytes + self.Q.nbytes + self.bias.nbytes)


class ToyBackend(api.Backend):
    scheme, mode, wire = "toy", "fast", (99, 1)  # 99: no Scheme enum value names it
    tolerance = 1e-4
    key_blob_names = ("token",)

    @property
    def parameter_set(self) -> str:
        return "toy-1"

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        m = packed.model
        return api.SchemeSpec(
            self.scheme, self.mode, self.parameter_set, m.n_items, m.dim, ciphertexts_per_query=1
        )

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> ToyClient:
        return ToyClient(spec, inputs, (keys or {}).get("token", os.urandom(16)))

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        api.unsharded(self, blocks)
        m = packed.model
        return api.PreparedModel(
            spec, ToyModel(m.A.astype(np.float64), m.Q.astype(np.float64), m.item_bias)
        )

    def validate_keys(self, keys: api.KeySet, blobs: dict[str, bytes]) -> None:
        self.check_keys_for(keys)
        if len(self.blob(blobs, "token")) != 16:
            raise InvalidKeyError("a toy token has 16 bytes")

    def bind(
        self,
        prepared: api.PreparedModel,
        keys: api.KeySet,
        blobs: dict[str, bytes],
        workers: int = 1,
    ) -> api.Bound:
        self.validate_keys(keys, blobs)
        model, items = prepared.encoded, prepared.spec.items

        def run(ciphertexts: list[bytes], should_stop: StopCheck) -> list[bytes]:
            x = _unpack(ciphertexts[0], items)
            check(should_stop)
            return [_pack(model.bias + (x @ model.A) @ model.Q.T)]

        return api.BoundEvaluator(prepared.spec, run, nbytes=1024)

    def key_set_cap(self) -> int:
        return 16

    def query_bytes(self, spec: api.SchemeSpec) -> int:
        return NONCE + 8 * spec.items

    def bound_bytes(self, spec: api.SchemeSpec, key_set_bytes: int) -> int:
        return 1024

    def items_per_reply(self, spec: api.SchemeSpec) -> int:
        return spec.items

"""A toy backend, NOT encryption: a "ciphertext" is the plain float64 vector behind a random
nonce. It exists to show that a new backend is one module plus its registration: with its own
block planning (blocks of 16 items, by which it is sharded), its own option
(--toy-reply-nonce) and its own nominal cost, the backend contract, the services, the sharded
path across evaluators and the alert rules run it with no edit anywhere else
(tests/test_toy_backend.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
# The toy's own block planning: a query and its replies go in blocks of this many items, and
# a model is sharded by those blocks (the SEAL backends plan theirs from slots).
BLOCK_ITEMS = 16


def _pack(values: npt.ArrayLike) -> bytes:
    return os.urandom(NONCE) + np.asarray(values, dtype="<f8").tobytes()


def _unpack(blob: bytes, items: int, nonce: int = NONCE) -> npt.NDArray[np.float64]:
    if len(blob) != nonce + 8 * items:
        raise InvalidCiphertextError(f"a toy ciphertext holds {items} values")
    values = np.frombuffer(blob, dtype="<f8", offset=nonce)
    if not np.all(np.isfinite(values)):
        raise InvalidCiphertextError("values must be finite")
    return values


def _reply(values: npt.ArrayLike, nonce: int) -> bytes:
    """A reply: its nonce length (the toy's own option), the nonce, the values."""
    return bytes([nonce]) + os.urandom(nonce) + np.asarray(values, dtype="<f8").tobytes()


def _unreply(blob: bytes) -> npt.NDArray[np.float64]:
    if not blob:
        raise InvalidCiphertextError("an empty toy reply")
    nonce = blob[0]
    return _unpack(blob[1:], (len(blob) - 1 - nonce) // 8, nonce)


def _blocks(items: int) -> list[range]:
    return [range(b, min(b + BLOCK_ITEMS, items)) for b in range(0, items, BLOCK_ITEMS)]


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
        x = X.toarray().ravel()
        return [_pack(x[block.start : block.stop]) for block in _blocks(len(x))], float(means[0])

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]:
        return np.concatenate([_unreply(r) for r in replies])

    def decrypt_part(self, replies: list[bytes], count: int) -> npt.NDArray[np.float64]:
        return api.decrypt_part(_unreply, replies, count)


@dataclass
class ToyModel:
    A: npt.NDArray[Any]
    Q: npt.NDArray[Any]
    bias: npt.NDArray[Any]
    blocks: range  # the item blocks this encoding holds (a shard, or all)

    @property
    def nbytes(self) -> int:
        return int(self.A.nbytes + self.Q.nbytes + self.bias.nbytes)


class ToyBackend(api.Backend):
    scheme, mode, wire = "toy", "fast", (99, 1)  # 99: no Scheme enum value names it
    tolerance = 1e-4
    key_blob_names = ("token",)
    shardable = True
    nominal_seconds = 0.01
    # Its own setting, offered by `serve` as --toy-reply-nonce and handed to `bind`.
    options = (api.Option("toy_reply_nonce", "16", "nonce bytes of each toy reply", int),)

    @property
    def parameter_set(self) -> str:
        return "toy-1"

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        m = packed.model
        return api.SchemeSpec(
            self.scheme,
            self.mode,
            self.parameter_set,
            m.n_items,
            m.dim,
            ciphertexts_per_query=self.blocks(m.n_items, m.dim),
        )

    def blocks(self, items: int, dim: int) -> int:
        return len(_blocks(items))

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> ToyClient:
        return ToyClient(spec, inputs, (keys or {}).get("token", os.urandom(16)))

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        m, planned = packed.model, _blocks(spec.items)
        blocks = blocks if blocks is not None else range(len(planned))
        items = slice(planned[blocks.start].start, planned[blocks.stop - 1].stop)
        encoded = ToyModel(
            m.A[items].astype(np.float64),
            m.Q[items].astype(np.float64),
            m.item_bias[items],
            blocks,
        )
        return api.PreparedModel(spec, encoded)

    def validate_keys(self, keys: api.KeySet, blobs: dict[str, bytes]) -> None:
        self.check_keys_for(keys)
        if len(self.blob(blobs, "token")) != 16:
            raise InvalidKeyError("a toy token has 16 bytes")

    def bind(
        self,
        prepared: api.PreparedModel,
        keys: api.KeySet,
        blobs: api.Blobs,
        options: api.Options = api.EMPTY,
    ) -> api.ShardBound:
        self.validate_keys(keys, blobs)
        model: ToyModel = prepared.encoded
        nonce = self.option_value(options, "toy_reply_nonce")
        planned = _blocks(prepared.spec.items)
        mine = [planned[b] for b in model.blocks]
        offset = mine[0].start

        def first(ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
            x = np.concatenate([_unpack(c, len(b)) for c, b in zip(ciphertexts, mine, strict=True)])
            check(should_stop)
            return _pack(x @ model.A)

        def second(first: bytes, start: int, should_stop: StopCheck) -> Iterator[bytes]:
            y = _unpack(first, prepared.spec.dim)
            for block in mine[start:]:
                check(should_stop)
                rows = slice(block.start - offset, block.stop - offset)
                yield _reply(model.bias[rows] + model.Q[rows] @ y, nonce)

        return api.ShardBound(prepared.spec, model.blocks, first, second, nbytes=1024)

    def combine(self, partials: list[bytes], context: Any = None) -> bytes:
        dim = (len(partials[0]) - NONCE) // 8
        return _pack(sum(_unpack(p, dim) for p in partials))

    def context(self) -> Any:
        return None

    def query_block_bytes(self) -> int:
        return NONCE + 8 * BLOCK_ITEMS

    def reply_bytes(self, spec: api.SchemeSpec) -> int:
        return 1 + 255 + 8 * BLOCK_ITEMS

    def key_set_cap(self) -> int:
        return 16

    def query_bytes(self, spec: api.SchemeSpec) -> int:
        return spec.ciphertexts_per_query * self.query_block_bytes()

    def bound_bytes(self, spec: api.SchemeSpec, key_set_bytes: int) -> int:
        return 1024

    def items_per_reply(self, spec: api.SchemeSpec) -> int:
        return BLOCK_ITEMS

"""The scheme-neutral face of the HE backends for fast mode.

A client turns the user's (m,) input vector x into ciphertext bytes and reply bytes back into
(m,) values b + x A Q^T; an evaluator validates query bytes and computes reply bytes. Services
and tests drive every scheme through these two protocols; `open_fast` builds a matched pair
in one process (for tests, benchmarks and the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from libcryptorec.compression import CompressedModel
from libcryptorec.he.bfv import BfvClient, BfvEvaluator, BfvModel
from libcryptorec.he.ckks import CkksClient, CkksEvaluator, CkksModel
from libcryptorec.he.paillier import PaillierClient, PaillierEvaluator, PaillierModel
from libcryptorec.he.params import CKKS_FAST_8192

SCHEMES = ("ckks", "bfv", "paillier")


class FastClient(Protocol):
    """Holds the secret key; never sends it anywhere."""

    def public_material(self) -> Any: ...

    def encrypt(self, x: npt.ArrayLike) -> list[bytes]: ...

    def decrypt(self, blobs: list[bytes]) -> npt.NDArray[np.float64]: ...


class FastEvaluator(Protocol):
    """Validates before computing; raises HEError subclasses on bad input."""

    def evaluate(self, blobs: list[bytes]) -> list[bytes]: ...

    def close(self) -> None: ...


@dataclass
class FastSession:
    """A client and an evaluator for one model, plus how close results are guaranteed to be
    to the plaintext compressed model (`tolerance`, absolute, before clamping)."""

    scheme: str
    client: FastClient
    evaluator: FastEvaluator
    tolerance: float


class _CkksEval:
    def __init__(self, ev: CkksEvaluator, model: CkksModel) -> None:
        self.ev, self.model = ev, model

    def evaluate(self, blobs: list[bytes]) -> list[bytes]:
        return self.ev.fast(self.ev.load_query(blobs, self.model.plan), self.model)

    def close(self) -> None:
        return None


class _BfvEval:
    def __init__(self, ev: BfvEvaluator, model: BfvModel) -> None:
        self.ev, self.model = ev, model

    def evaluate(self, blobs: list[bytes]) -> list[bytes]:
        return self.ev.fast(self.ev.load_query(blobs, self.model.plan), self.model)

    def close(self) -> None:
        return None


class _PaillierEval:
    def __init__(self, ev: PaillierEvaluator) -> None:
        self.ev = ev

    def evaluate(self, blobs: list[bytes]) -> list[bytes]:
        return self.ev.fast(self.ev.load_query(blobs))

    def close(self) -> None:
        self.ev.close()


class _PaillierClient:
    """Paillier decryption needs the reply layout, which the model fixes."""

    def __init__(self, client: PaillierClient, model: PaillierModel) -> None:
        self.client, self.layout = client, model.reply_layout(client.key_bits)

    def public_material(self) -> Any:
        return self.client.public_material()

    def encrypt(self, x: npt.ArrayLike) -> list[bytes]:
        return self.client.encrypt(x)

    def decrypt(self, blobs: list[bytes]) -> npt.NDArray[np.float64]:
        return self.client.decrypt(blobs, self.layout)


def open_fast(
    scheme: str, packed: CompressedModel, *, workers: int = 1, key_bits: int = 2048
) -> FastSession:
    """A matched client and evaluator for `scheme` over the compressed model."""
    model = packed.model
    if scheme == "ckks":
        ckks = CkksModel.encode(CKKS_FAST_8192, model.A, model.Q, model.item_bias)
        c = CkksClient(CKKS_FAST_8192, ckks.plan)
        return FastSession(
            scheme, c, _CkksEval(CkksEvaluator(CKKS_FAST_8192, c.public_material()), ckks), 1e-3
        )
    if scheme == "bfv":
        bfv = BfvModel.encode(model)
        b = BfvClient.for_model(bfv)
        # fixed-point rounding of x and the weights, measured below 5e-3 on ml-1m
        return FastSession(scheme, b, _BfvEval(BfvEvaluator(b.public_material()), bfv), 1e-2)
    if scheme == "paillier":
        pm = PaillierModel.encode(packed)
        p = PaillierClient(key_bits)
        ev = PaillierEvaluator(p.public_material(), pm, workers=workers)
        return FastSession(scheme, _PaillierClient(p, pm), _PaillierEval(ev), 1e-2)
    raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")

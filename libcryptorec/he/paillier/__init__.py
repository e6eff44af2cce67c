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

The package: keys and their checks (`keys`), fixed point and reply packing (`encoding`), the
client (`client`), the server's kernels (`kernels`) and the backend (`backend`).
"""

from libcryptorec.he.paillier.backend import BACKEND, PaillierFastBackend
from libcryptorec.he.paillier.client import PaillierClient
from libcryptorec.he.paillier.kernels import (
    PaillierEvaluator,
    PaillierModel,
    bucket_columns,
    paper_rows,
)
from libcryptorec.he.paillier.keys import PaillierPublicKey, validate_modulus

__all__ = [
    "BACKEND",
    "PaillierClient",
    "PaillierEvaluator",
    "PaillierFastBackend",
    "PaillierModel",
    "PaillierPublicKey",
    "bucket_columns",
    "paper_rows",
    "validate_modulus",
]

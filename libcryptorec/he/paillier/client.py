"""The Paillier client: keys (python-paillier), encryption of the fixed-point inputs, decryption
and unpacking of the packed replies."""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np
import numpy.typing as npt
from phe import paillier

from libcryptorec.he.errors import InvalidCiphertextError
from libcryptorec.he.paillier.encoding import PaillierEncoding, ReplyLayout
from libcryptorec.he.paillier.keys import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    SCHEME,
    Mpz,
    PaillierPublicKey,
    to_bytes,
)


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
        return PaillierPublicKey(SCHEME, self.key_bits, to_bytes(self.n, (self.key_bits + 7) // 8))

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
            to_bytes((1 + (int(v) % n) * n) * rn % n2, size)
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

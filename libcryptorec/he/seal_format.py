"""SEAL 4.x's byte format, read without SEAL: what a client's ciphertexts and keys claim to be,
checked before SEAL touches them.

SEAL's own loader checks that coefficients are reduced and that metadata fits the context,
but not what an evaluator needs on top: the NTT flag of the scheme, the expected level and
scale, a second polynomial that is not zero (SEAL refuses "transparent" results deep inside a
computation), every Galois key a circuit rotates by, and no bytes beyond the object. Layout
(little endian), as SEAL 4.1 writes it uncompressed:

    header (16 B): magic 0xA15E u16, header size u8 (16), version major u8, minor u8,
                   compression u8, reserved u16, total size u64
    Ciphertext:    parms_id (4 x u64), NTT flag u8, size u64, degree u64, limbs u64, scale f64,
                   correction factor u64, then the coefficients as a DynArray:
                   header, count u64, count x u64 (polynomial after polynomial, limb by limb)
    seeded:        (SEAL's *Serializable keys and secret-key encryption; half the bytes) a
                   2-polynomial ciphertext whose DynArray holds the first polynomial only,
                   followed by the seed its second one expands from (UniformRandomGeneratorInfo):
                   header, PRNG type u8 (1 BLAKE2xb, 2 SHAKE256), seed 64 B
    PublicKey:     a Ciphertext
    KSwitchKeys:   header, parms_id, dim1 u64, then per entry dim2 u64 and dim2 PublicKeys
                   (Galois keys: entry (g - 1) / 2 holds the key of Galois element g)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError

MAGIC = 0xA15E
HEADER = struct.Struct("<HBBBBHQ")
CIPHERTEXT_FIELDS = struct.Struct("<32sBQQQdQ")
U64 = struct.Struct("<Q")
SEED = struct.Struct("<B64s")
PRNG_TYPES = (1, 2)  # prng_type::blake2xb, prng_type::shake256


class FormatError(ValueError):
    """The bytes are not the SEAL object they claim to be (mapped to the caller's error)."""


@dataclass(frozen=True)
class Ciphertext:
    """A serialized ciphertext (or public key), parsed; `data` views the caller's bytes."""

    ntt: bool
    size: int
    degree: int
    limbs: int
    scale: float
    correction: int
    data: npt.NDArray[np.uint64]
    # Seeded form: the 64-byte seed of the second polynomial, which `data` then lacks.
    seed: bytes | None = None

    def polynomial(self, index: int) -> npt.NDArray[np.uint64]:
        """Coefficients of polynomial `index` over every limb (not the seeded one)."""
        if self.seed is not None and index > 0:
            raise ValueError("a seeded ciphertext holds its second polynomial as a seed")
        step = self.degree * self.limbs
        return self.data[index * step : (index + 1) * step]

    def is_transparent(self) -> bool:
        """True if every polynomial after the first is zero (SEAL refuses to compute on it).
        A seeded one never is: its second polynomial is expanded from a non-zero seed."""
        if self.seed is not None:
            return False
        return not any(np.any(self.polynomial(i)) for i in range(1, self.size))


def _header(blob: bytes, offset: int) -> tuple[int, int]:
    """Check the header at `offset`; returns (object end, offset after the header)."""
    if len(blob) - offset < HEADER.size:
        raise FormatError("truncated SEAL header")
    size = _declared_size(blob, offset)
    if size < HEADER.size or offset + size > len(blob):
        raise FormatError("SEAL object size does not match the bytes sent")
    return offset + size, offset + HEADER.size


def _declared_size(blob: bytes, offset: int) -> int:
    """The size the SEAL header at `offset` declares (FormatError unless it is the header of
    an uncompressed SEAL 4 object; the caller checks there are HEADER.size bytes)."""
    magic, header_size, major, _minor, compression, reserved, size = HEADER.unpack_from(
        blob, offset
    )
    if magic != MAGIC or header_size != HEADER.size:
        raise FormatError("not a SEAL object")
    if major != 4:
        raise FormatError(f"SEAL version {major}.x objects are not accepted (4.x only)")
    if compression != 0:
        raise FormatError("compressed SEAL objects are not accepted (send them uncompressed)")
    if reserved != 0:
        raise FormatError("non-zero reserved header bytes")
    return int(size)


def check_object_start(start: bytes, size: int) -> None:
    """FormatError unless `start`, the first bytes of a blob of `size` bytes (at least the
    16-byte header, or all of a shorter blob), begins one uncompressed SEAL 4 object of exactly
    `size` bytes: what can be known of a key blob before the rest of it arrives."""
    if len(start) < HEADER.size:
        raise FormatError("truncated SEAL header")
    declared = _declared_size(start, 0)
    if declared != size:
        raise FormatError(f"the SEAL object declares {declared} bytes; the key set header {size}")


def _u64(blob: bytes, offset: int) -> tuple[int, int]:
    if len(blob) - offset < U64.size:
        raise FormatError("truncated SEAL object")
    return U64.unpack_from(blob, offset)[0], offset + U64.size


def read_ciphertext(blob: bytes, offset: int = 0) -> tuple[Ciphertext, int]:
    """Parse the ciphertext (or public key) starting at `offset`; returns it and its end."""
    end, pos = _header(blob, offset)
    if end - pos < CIPHERTEXT_FIELDS.size:
        raise FormatError("truncated ciphertext")
    _, ntt, size, degree, limbs, scale, correction = CIPHERTEXT_FIELDS.unpack_from(blob, pos)
    pos += CIPHERTEXT_FIELDS.size
    array_end, pos = _header(blob, pos)
    count, pos = _u64(blob, pos)
    if ntt not in (0, 1) or not 2 <= size <= 16 or degree & (degree - 1) or not 0 < limbs < 64:
        raise FormatError("implausible ciphertext shape")
    # Seeded: the first polynomial's coefficients stop short of the object's end, where the
    # seed of the second follows.
    seeded = array_end != end
    polynomials = 1 if seeded else size
    stored = pos + 8 * count == array_end and count == polynomials * degree * limbs
    if not stored or (seeded and size != 2):
        raise FormatError("ciphertext length does not match its shape")
    seed = _seed(blob, array_end, end) if seeded else None
    data = np.frombuffer(blob, dtype="<u8", count=count, offset=pos)
    return Ciphertext(bool(ntt), size, degree, limbs, scale, correction, data, seed), end


def _seed(blob: bytes, offset: int, end: int) -> bytes:
    """The seed object ending a seeded ciphertext at `offset`, which must end at `end`."""
    seed_end, pos = _header(blob, offset)
    if seed_end != end or seed_end - pos != SEED.size:
        raise FormatError("seeded ciphertext: malformed seed")
    prng, seed = SEED.unpack_from(blob, pos)
    if prng not in PRNG_TYPES:
        raise FormatError(f"seeded ciphertext: unknown PRNG type {prng}")
    if not any(seed):
        raise FormatError("seeded ciphertext: all-zero seed")
    return bytes(seed)


def read_whole_ciphertext(blob: bytes) -> Ciphertext:
    """A blob that is exactly one ciphertext, nothing after it."""
    ct, end = read_ciphertext(blob)
    if end != len(blob):
        raise FormatError(f"{len(blob) - end} bytes after the ciphertext")
    return ct


def read_kswitch_keys(blob: bytes) -> dict[int, list[Ciphertext]]:
    """Parse key-switching keys (relinearisation or Galois): {entry: [key per limb]} for the
    entries present; nothing may follow them."""
    end, pos = _header(blob, 0)
    if end != len(blob):
        raise FormatError(f"{len(blob) - end} bytes after the keys")
    pos += 32  # parms_id: SEAL checks it against the context
    entries, pos = _u64(blob, pos)
    if entries > 1 << 16:
        raise FormatError("implausible number of key entries")
    keys: dict[int, list[Ciphertext]] = {}
    for index in range(entries):
        count, pos = _u64(blob, pos)
        if count > 64:
            raise FormatError("implausible key-switching key")
        row = []
        for _ in range(count):
            key, pos = read_ciphertext(blob, pos)
            row.append(key)
        if row:
            keys[index] = row
    if pos != end:
        raise FormatError("key-switching keys do not fill their declared size")
    return keys


def galois_index(step: int, degree: int) -> int:
    """Entry of SEAL's Galois keys that rotates batched slots left by `step` (0 < step <
    degree/2): Galois element 3^step mod 2*degree, stored at (element - 1) / 2."""
    if not 0 < step < degree // 2:
        raise ValueError(f"rotation step {step} out of range for degree {degree}")
    return (pow(3, step, 2 * degree) - 1) >> 1


def check_ciphertext(
    blob: bytes, *, degree: int, limbs: int, ntt: bool, scale: float | None
) -> Ciphertext:
    """InvalidCiphertextError unless `blob` is exactly one fresh 2-polynomial ciphertext of
    this ring at `limbs` limbs, in the scheme's NTT form, at exactly `scale` (None: any finite
    positive scale), with a non-zero mask polynomial."""
    try:
        ct = read_whole_ciphertext(blob)
    except FormatError as exc:
        raise InvalidCiphertextError(str(exc)) from None
    if ct.size != 2 or ct.degree != degree:
        raise InvalidCiphertextError("ciphertext must have two polynomials of this ring")
    if ct.limbs != limbs:
        raise InvalidCiphertextError(
            f"ciphertext has {ct.limbs} limbs, expected {limbs} (fresh, top-level input)"
        )
    if ct.ntt != ntt:
        raise InvalidCiphertextError(f"ciphertext must {'' if ntt else 'not '}be in NTT form")
    if not (math.isfinite(ct.scale) and ct.scale > 0) or ct.correction != 1:
        raise InvalidCiphertextError("ciphertext scale must be finite and positive")
    if scale is not None and ct.scale != scale:
        raise InvalidCiphertextError(
            f"ciphertext scale 2^{math.log2(ct.scale):.2f}, expected 2^{math.log2(scale):.0f}"
        )
    if ct.is_transparent():
        raise InvalidCiphertextError("ciphertext mask polynomial is zero (transparent)")
    return ct


def _check_key(key: Ciphertext, degree: int, limbs: int, what: str) -> None:
    if key.size != 2 or key.degree != degree or key.limbs != limbs or not key.ntt:
        raise InvalidKeyError(f"{what} has the wrong shape for this parameter set")
    if not np.any(key.polynomial(0)) or key.is_transparent():
        raise InvalidKeyError(f"{what} has an all-zero polynomial")


def check_public_key(blob: bytes, *, degree: int, limbs: int) -> None:
    """InvalidKeyError unless `blob` is one public key of this ring (`limbs` including the
    special prime) with no zero polynomial."""
    try:
        key = read_whole_ciphertext(blob)
    except FormatError as exc:
        raise InvalidKeyError(f"public key: {exc}") from None
    _check_key(key, degree, limbs, "public key")


def check_kswitch_keys(
    blob: bytes, *, degree: int, limbs: int, entries: set[int], what: str
) -> None:
    """InvalidKeyError unless `blob` holds key-switching keys at exactly `entries`, each one
    key per data limb, none with a zero polynomial."""
    try:
        keys = read_kswitch_keys(blob)
    except FormatError as exc:
        raise InvalidKeyError(f"{what}: {exc}") from None
    if set(keys) != entries:
        raise InvalidKeyError(
            f"{what}: keys present for {len(keys)} entries, {len(entries)} declared"
        )
    for row in keys.values():
        if len(row) != limbs - 1:
            raise InvalidKeyError(f"{what}: one key per data limb expected")
        for key in row:
            _check_key(key, degree, limbs, what)

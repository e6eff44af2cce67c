"""What every SEAL-based backend (CKKS fast, CKKS accurate, BFV) shares: size caps, validated
loading of keys and ciphertexts, diagonal encoding, and the one ciphertext loop of the diagonal
method (`giant_steps`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from Pyfhel import PyCtxt, Pyfhel, PyPtxt

from libcryptorec.compression import CompressedModel
from libcryptorec.he import seal_format
from libcryptorec.he.backend import (
    EMPTY,
    Backend,
    Blob,
    Blobs,
    KeySet,
    Options,
    PreparedModel,
    SchemeSpec,
    ShardBound,
)
from libcryptorec.he.cancel import StopCheck, check, never
from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.layout import DiagonalPlan
from libcryptorec.he.params import check_security

# Serialized SEAL objects carry a 16-byte header plus 8 bytes per coefficient and limb.
_HEADER_SLACK = 4096


def ciphertext_bytes(n: int, limbs: int) -> int:
    """Upper bound on a serialized 2-polynomial ciphertext of degree n with `limbs` limbs."""
    return 2 * limbs * n * 8 + _HEADER_SLACK


def context_bytes(n: int, limbs: int) -> int:
    """Resident memory of one more SEAL context (NTT and Galois tables) in a process that has
    built one already, measured with its keys: about 16 words per coefficient and prime."""
    return 16 * 8 * n * limbs


def resident_key_bytes(serialized: int) -> int:
    """Resident memory of loaded keys: measured 1.4-2.3x their serialized size per key set
    bound by an evaluator process (benchmarks/results/evaluator-memory.json)."""
    return int(1.5 * serialized)


def diagonals_bytes(diagonals: Diagonals, n: int, limbs: int) -> int:
    """Resident memory of encoded diagonals: every plaintext keeps the capacity it was encoded
    with (`limbs` words per coefficient; switching it down a level frees nothing)."""
    count = sum(d is not None for block in diagonals for row in block for d in row)
    return count * n * limbs * 8


@dataclass(frozen=True)
class SealPublicKeys:
    """What a SEAL client registers: its public key, the Galois keys for the plan's rotations
    and, for circuits that multiply ciphertexts, its relinearisation key."""

    scheme: str
    params: str
    public_key: Blob
    rotation_keys: Blob
    rotation_steps: tuple[int, ...]
    relin_key: Blob | None = None

    @property
    def size(self) -> int:
        return len(self.public_key) + len(self.rotation_keys) + len(self.relin_key or b"")

    def blobs(self) -> dict[str, bytes]:
        """The blobs by the names a key set registers them under (as bytes)."""
        out = {"public_key": bytes(self.public_key), "rotation_keys": bytes(self.rotation_keys)}
        if self.relin_key is not None:
            out["relin_key"] = bytes(self.relin_key)
        return out


def export_public(
    he: Pyfhel, scheme: str, name: str, plan: DiagonalPlan, *, relin: bool = False
) -> SealPublicKeys:
    """The public, Galois (and relinearisation) keys held by `he`; never its secret key."""
    return SealPublicKeys(
        scheme=scheme,
        params=name,
        public_key=he.to_bytes_public_key(compr_mode="none"),
        rotation_keys=he.to_bytes_rotate_key(compr_mode="none"),
        rotation_steps=plan.rotation_steps,
        relin_key=he.to_bytes_relin_key(compr_mode="none") if relin else None,
    )


def new_context(scheme: str, n: int, primes: tuple[int, ...], **options: Any) -> Pyfhel:
    """A Pyfhel holding only a SEAL context we build ourselves from an allow-listed parameter
    set (never a client's), refused unless (n, primes) is inside the 128-bit table."""
    check_security(n, primes)
    he = Pyfhel()
    he.contextGen(scheme=scheme, n=n, qi_sizes=list(primes), **options)
    return he


class SealEvaluator:
    """What every SEAL evaluator holds for one client: a context of its parameter set with the
    client's checked keys loaded, the rotation steps they cover, and their resident size."""

    def __init__(self, he: Pyfhel, material: SealPublicKeys, *, name: str, limbs: int) -> None:
        load_keys(he, material, scheme=he.scheme.name, name=name, limbs=limbs)
        self._he = he
        self.rotation_steps = material.rotation_steps
        self.nbytes = context_bytes(he.n, limbs) + resident_key_bytes(material.size)


def make_or_load_keys(
    he: Pyfhel, plan: DiagonalPlan, keys: dict[str, bytes] | None, *, relin: bool = False
) -> None:
    """Give `he` the client's saved `keys` (from `export_all_keys`), or new ones: a key pair,
    Galois keys for the plan's rotations and, with `relin`, a relinearisation key."""
    if keys is not None:
        import_all_keys(he, keys)
        return
    he.keyGen()
    if relin:
        he.relinKeyGen()
    he.rotateKeyGen(rot_steps=list(plan.rotation_steps))


def export_all_keys(he: Pyfhel, relin: bool) -> dict[str, bytes]:
    """Every key `he` holds, the secret one included: for the client's own key cache only."""
    keys = {
        "secret_key": he.to_bytes_secret_key(compr_mode="none"),
        "public_key": he.to_bytes_public_key(compr_mode="none"),
        "rotation_keys": he.to_bytes_rotate_key(compr_mode="none"),
    }
    if relin:
        keys["relin_key"] = he.to_bytes_relin_key(compr_mode="none")
    return keys


class SealClientKeys:
    """Key export shared by the SEAL fast-mode clients: each holds its context with keys
    (`_he`), its parameter set (`params`), its plan and its scheme's name."""

    _he: Pyfhel
    params: Any
    plan: DiagonalPlan
    scheme: ClassVar[str]

    def export_keys(self) -> dict[str, bytes]:
        """All keys, the secret one included, for the client's local key cache."""
        return export_all_keys(self._he, relin=False)

    def public_material(self) -> SealPublicKeys:
        """Serialized public and Galois keys; never the secret key."""
        return export_public(self._he, self.scheme, self.params.name, self.plan)

    def public_blobs(self) -> dict[str, bytes]:
        """The key set to register, by blob name."""
        return self.public_material().blobs()


def import_all_keys(he: Pyfhel, keys: dict[str, bytes]) -> None:
    """Load keys written by `export_all_keys` into a context built from the same parameters."""
    he.from_bytes_secret_key(keys["secret_key"])
    he.from_bytes_public_key(keys["public_key"])
    he.from_bytes_rotate_key(keys["rotation_keys"])
    if "relin_key" in keys:
        he.from_bytes_relin_key(keys["relin_key"])


def kswitch_cap(n: int, limbs: int, entries: int) -> int:
    """Upper bound on serialized key-switching keys with `entries` keys (one ciphertext per
    data limb each) in a ring of degree n with `limbs` primes; Galois keys also carry one
    8-byte count per possible Galois element (n of them)."""
    return entries * (limbs - 1) * ciphertext_bytes(n, limbs) + 8 * n + _HEADER_SLACK


def key_set_cap(n: int, limbs: int, *, relin: bool) -> int:
    """Largest key set a client can need for a ring of degree n and `limbs` primes (the special
    one included): a public key, a relinearisation key if the circuit multiplies ciphertexts,
    and Galois keys for every power-of-two rotation (the most any DiagonalPlan uses)."""
    steps = (n // 2).bit_length() - 1
    relin_cap = kswitch_cap(n, limbs, 1) if relin else 0
    return ciphertext_bytes(n, limbs) + relin_cap + kswitch_cap(n, limbs, steps)


def check_rotation_steps(steps: tuple[int, ...], n: int) -> None:
    """InvalidKeyError unless `steps` are distinct powers of two below n/2 (every rotation a
    DiagonalPlan uses is one, so no key set needs more than log2(n/2) of them)."""
    if len(set(steps)) != len(steps) or any(s <= 0 or s & (s - 1) or s >= n // 2 for s in steps):
        raise InvalidKeyError("rotation steps must be distinct powers of two below the slot count")


def load_keys(he: Pyfhel, material: SealPublicKeys, *, scheme: str, name: str, limbs: int) -> None:
    """Check a client's key blobs, then load them into `he`, whose context we built ourselves.

    `limbs` counts the ring's primes, the special one included. Raises InvalidKeyError before
    SEAL reads anything of another scheme or parameter set, larger than such keys can be,
    shaped wrongly, with a zero polynomial, or with Galois keys other than exactly the declared
    rotation steps.
    """
    if material.scheme != scheme or material.params != name:
        raise InvalidKeyError(
            f"keys are for {material.scheme}/{material.params}, not {scheme}/{name}"
        )
    check_rotation_steps(tuple(material.rotation_steps), he.n)
    relin = material.relin_key
    if len(material.public_key) > ciphertext_bytes(he.n, limbs):
        raise InvalidKeyError("public key larger than the parameter set allows")
    if relin is not None and len(relin) > kswitch_cap(he.n, limbs, 1):
        raise InvalidKeyError("relinearisation key larger than the parameter set allows")
    if len(material.rotation_keys) > kswitch_cap(he.n, limbs, len(material.rotation_steps)):
        raise InvalidKeyError("rotation keys larger than the declared steps allow")
    # One bytes copy of each blob at a time (a registration's blobs may be views of its
    # buffer): checked, then loaded, before the next is copied.
    public = bytes(material.public_key)
    seal_format.check_public_key(public, degree=he.n, limbs=limbs)
    _load(he.from_bytes_public_key, public, name)
    del public
    if relin is not None:
        relin_bytes = bytes(relin)
        seal_format.check_kswitch_keys(
            relin_bytes, degree=he.n, limbs=limbs, entries={0}, what="relinearisation key"
        )
        _load(he.from_bytes_relin_key, relin_bytes, name)
        del relin_bytes
    rotation = bytes(material.rotation_keys)
    seal_format.check_kswitch_keys(
        rotation,
        degree=he.n,
        limbs=limbs,
        entries={seal_format.galois_index(s, he.n) for s in material.rotation_steps},
        what="rotation keys",
    )
    _load(he.from_bytes_rotate_key, rotation, name)


def _load(load: Callable[[bytes], Any], blob: bytes, name: str) -> None:
    """Load a checked key blob into SEAL; InvalidKeyError if SEAL still refuses it."""
    try:
        load(blob)
    except Exception as exc:  # SEAL raises several exception types for malformed input
        raise InvalidKeyError(f"keys do not load under {name} ({exc})") from exc


def require_rotations(available: tuple[int, ...], plan: DiagonalPlan) -> None:
    """Raise InvalidKeyError if the registered Galois keys miss a step the plan uses."""
    missing = set(plan.rotation_steps) - set(available)
    if missing:
        raise InvalidKeyError(f"registered keys lack rotation steps {sorted(missing)}")


# Encoded diagonals, (blocks, G, B); None marks a diagonal that is zero, which contributes
# nothing and which SEAL refuses to multiply by ("result ciphertext is transparent").
Diagonals = list[list[list[PyPtxt | None]]]


def encode_diagonals(
    he: Pyfhel, diagonals: npt.NDArray[np.float64], scale: float, level: int
) -> Diagonals:
    """Encode (blocks, G, B, S) diagonals at `scale`, switched down to modulus `level`.

    A diagonal whose values are all below one unit at `scale` encodes to zero: it becomes None.
    """
    out: Diagonals = []
    for block in diagonals:
        rows = []
        for row in block:
            encoded: list[PyPtxt | None] = []
            for d in row:
                if float(np.max(np.abs(d))) * scale < 1.0:
                    encoded.append(None)
                    continue
                pt = he.encodeFrac(np.ascontiguousarray(d), scale=scale)
                for _ in range(level):
                    he.mod_switch_to_next(pt)
                encoded.append(pt)
            rows.append(encoded)
        out.append(rows)
    return out


def per_block(blocks: range, encode_run: Callable[[range], Diagonals]) -> Diagonals:
    """`encode_run` of each block of `blocks` alone, concatenated: only one block's numpy
    diagonals (W x S floats, 16 MB for d = 500) are in memory at a time, not the run's."""
    out: Diagonals = []
    for b in blocks:
        out.extend(encode_run(range(b, b + 1)))
    return out


def baby_steps(
    he: Pyfhel, ct: PyCtxt, plan: DiagonalPlan, should_stop: StopCheck = never
) -> list[PyCtxt]:
    """[rot(ct, 0), rot(ct, 1), ..., rot(ct, B - 1)], by repeated rotation by one slot."""
    rotated = [ct]
    for _ in range(1, plan.baby):
        check(should_stop)
        rotated.append(he.rotate(rotated[-1], 1, in_new_ctxt=True))
    return rotated


def giant_steps(
    he: Pyfhel,
    rotated: list[list[PyCtxt]],
    diagonals: Diagonals,
    plan: DiagonalPlan,
    *,
    rescale: bool,
    should_stop: StopCheck = never,
) -> PyCtxt:
    """Horner over giant steps g of sum_c sum_b u'_{c,g,b} * rotated[c][b].

    With `rescale`, each partial sum drops a limb before it is rotated, so the G - 1 giant
    rotations run one limb cheaper. Zero diagonals (None) are skipped. This is the one
    ciphertext loop of every diagonal product.
    """
    acc: PyCtxt | None = None
    for g in reversed(range(plan.giant)):
        check(should_stop)
        inner: PyCtxt | None = None
        for c, row in enumerate(rotated):
            for b, ct in enumerate(row):
                diagonal = diagonals[c][g][b]
                if diagonal is None:
                    continue
                term = he.multiply_plain(ct, diagonal, in_new_ctxt=True)
                if inner is None:
                    inner = term
                else:
                    he.add(inner, term)
        if inner is not None and rescale:
            he.rescale_to_next(inner)
        if acc is not None:
            he.rotate(acc, plan.baby)  # acc_g = rot(acc_{g+1}, B) + inner_g
            if inner is not None:
                he.add(acc, inner)
        else:
            acc = inner  # everything above g was zero
    if acc is None:
        raise ValueError("every diagonal of this matrix block is zero: nothing to compute")
    return acc


def first_product(
    he: Pyfhel,
    blocks: list[PyCtxt],
    diagonals: Diagonals,
    plan: DiagonalPlan,
    *,
    rescale: bool = True,
    should_stop: StopCheck = never,
) -> PyCtxt:
    """x M for the blocks of an item-indexed vector x: the result comes out repeated every W
    slots (the layout the second product reads), rescaled once when `rescale` (CKKS)."""
    rotated = [baby_steps(he, ct, plan, should_stop) for ct in blocks]
    out = giant_steps(he, rotated, diagonals, plan, rescale=rescale, should_stop=should_stop)
    for step in plan.replication_steps:
        he.add(out, he.rotate(out, step, in_new_ctxt=True))
    return out


class ShardEncoding(Protocol):
    """A fast-mode model encoded for a run of item blocks (a shard, or every block): the
    plan, the blocks it covers, and the diagonals of both products for those blocks."""

    plan: DiagonalPlan
    blocks: range
    first: Diagonals
    second: Diagonals


class FastKernel(SealEvaluator, ABC):
    """Fast mode's circuit for one client's keys, by item shards: z = b + (x A) Q^T with the
    first product summed over shards.

    * `partial(query, shard)`: the shard's share of x A, before replication (item blocks
      contribute independently, so the shares add up to the whole product);
    * `sum_partials`: their sum (any process with the parameter set's context can add them);
    * `replies(first, shard)`: replication, then the shard's reply blocks one by one, as each
      is computed.

    An unsharded model is one shard of every block. Subclasses set how partials and queries
    load and how a reply block is finished (bias, re-randomisation)."""

    rescale: ClassVar[bool]

    @abstractmethod
    def load_query(self, blobs: list[bytes], shard: Any) -> list[PyCtxt]:
        """Validated input blocks of `shard` (InvalidCiphertextError otherwise)."""

    @staticmethod
    def expect_blocks(blobs: list[bytes], shard: Any) -> None:
        """InvalidCiphertextError unless there is one input block per block of `shard`."""
        if len(blobs) != len(shard.blocks):
            raise InvalidCiphertextError(
                f"expected {len(shard.blocks)} input blocks, got {len(blobs)}"
            )

    @abstractmethod
    def load_partial(self, blob: bytes) -> PyCtxt:
        """A validated partial first product."""

    @abstractmethod
    def finish(self, z: PyCtxt, shard: Any, block: int) -> bytes:
        """Reply block `block` of `shard` (an index into its blocks), serialized, from z."""

    def partial(
        self, query: list[PyCtxt], shard: ShardEncoding, should_stop: StopCheck = never
    ) -> PyCtxt:
        """The shard's share of x A for its input blocks `query` (one per shard block)."""
        if len(query) != len(shard.blocks):
            raise InvalidCiphertextError(
                f"expected {len(shard.blocks)} input blocks for this shard, got {len(query)}"
            )
        require_rotations(self.rotation_steps, shard.plan)
        rotated = [baby_steps(self._he, ct, shard.plan, should_stop) for ct in query]
        return giant_steps(
            self._he,
            rotated,
            shard.first,
            shard.plan,
            rescale=self.rescale,
            should_stop=should_stop,
        )

    def replies(
        self, first: PyCtxt, shard: ShardEncoding, start: int = 0, should_stop: StopCheck = never
    ) -> Iterator[bytes]:
        """The shard's reply blocks from index `start` on, each as soon as it is computed."""
        he, plan = self._he, shard.plan
        require_rotations(self.rotation_steps, plan)
        for step in plan.replication_steps:  # x A repeated every W slots
            he.add(first, he.rotate(first, step, in_new_ctxt=True))
        rotated = baby_steps(he, first, plan, should_stop)
        for c in range(start, len(shard.blocks)):
            z = giant_steps(
                he, [rotated], [shard.second[c]], plan, rescale=False, should_stop=should_stop
            )
            yield self.finish(z, shard, c)

    def fast(
        self, query: list[PyCtxt], shard: ShardEncoding, should_stop: StopCheck = never
    ) -> list[bytes]:
        """Every reply block of an unsharded model for the validated `query`."""
        return list(self.replies(self.partial(query, shard, should_stop), shard, 0, should_stop))


def sum_partials(he: Pyfhel, partials: list[PyCtxt]) -> PyCtxt:
    """The first product: the sum of the shards' partial products."""
    if not partials:
        raise ValueError("no partial products to add")
    total = partials[0]
    for other in partials[1:]:
        he.add(total, other)
    return total


def load_ciphertext(he: Pyfhel, blob: bytes, *, limbs: int, scale: float | None) -> PyCtxt:
    """Validate, then deserialize, one ciphertext of exactly `limbs` data limbs under the
    context of `he`: size-capped, in the scheme's NTT form, at `scale` (None: any finite
    positive scale), not transparent, nothing after it (seal_format.check_ciphertext), and
    with coefficients SEAL accepts for this context. InvalidCiphertextError otherwise."""
    if not isinstance(blob, bytes | bytearray) or len(blob) > ciphertext_bytes(he.n, limbs):
        raise InvalidCiphertextError("ciphertext larger than the parameter set allows")
    blob = bytes(blob)
    # SEAL keeps CKKS ciphertexts in NTT form and BFV ones not: a property of SEAL's scheme
    # type (Pyfhel's Scheme_t), not of which backend is asking.
    ntt = he.scheme is type(he.scheme).ckks
    seal_format.check_ciphertext(blob, degree=he.n, limbs=limbs, ntt=ntt, scale=scale)
    ct = PyCtxt(pyfhel=he)
    try:
        ct.from_bytes(blob, he.scheme)
    except Exception as exc:  # SEAL raises RuntimeError/ValueError/IOError variants
        raise InvalidCiphertextError(f"not a ciphertext of this parameter set ({exc})") from exc
    return ct


class SealBackend(Backend):
    """What the SEAL backends share: a ring of degree `n` with `limbs` primes (the special one
    included), diagonal-method plans, and key sets of a public key, Galois keys for the plan's
    power-of-two rotations and, with `relin`, a relinearisation key."""

    # The allow-listed parameter set: a name, a ring degree n and its primes.
    params: ClassVar[Any]
    relin: ClassVar[bool] = False

    @property
    def parameter_set(self) -> str:
        return str(self.params.name)

    @property
    def n(self) -> int:
        return int(self.params.n)

    @property
    def limbs(self) -> int:
        """Primes of the ring, the special one included."""
        return len(self.params.primes)

    def public_keys(self, keys: KeySet, blobs: Mapping[str, Blob]) -> SealPublicKeys:
        """The registered blobs as the SEAL loader takes them (InvalidKeyError if one is
        missing or the key set is for another backend)."""
        self.check_keys_for(keys)
        return SealPublicKeys(
            scheme=self.scheme,
            params=self.parameter_set,
            public_key=self.blob(blobs, "public_key"),
            rotation_keys=self.blob(blobs, "rotation_keys"),
            rotation_steps=keys.rotation_steps,
            relin_key=self.blob(blobs, "relin_key") if self.relin else None,
        )

    @abstractmethod
    def load(self, public: SealPublicKeys) -> Any:
        """The scheme's evaluator kernel with these keys checked and loaded."""

    def validate_keys(self, keys: KeySet, blobs: Mapping[str, Blob]) -> None:
        self.load(self.public_keys(keys, blobs))

    def key_set_cap(self) -> int:
        return key_set_cap(self.n, self.limbs, relin=self.relin)

    def blob_caps(self, rotation_steps: tuple[int, ...]) -> dict[str, int]:
        caps = {
            "public_key": ciphertext_bytes(self.n, self.limbs),
            "rotation_keys": kswitch_cap(self.n, self.limbs, len(rotation_steps)),
        }
        if self.relin:
            caps["relin_key"] = kswitch_cap(self.n, self.limbs, 1)
        return caps

    blob_start_bytes = seal_format.HEADER.size

    def check_blob_start(self, name: str, start: bytes, size: int) -> None:
        try:
            seal_format.check_object_start(start, size)
        except seal_format.FormatError as exc:
            raise InvalidKeyError(f"{name}: {exc}") from None

    def check_key_header(self, rotation_steps: tuple[int, ...]) -> None:
        check_rotation_steps(rotation_steps, self.n)

    def query_bytes(self, spec: SchemeSpec) -> int:
        return spec.ciphertexts_per_query * ciphertext_bytes(self.n, self.limbs - 1)

    def bound_bytes(self, spec: SchemeSpec, key_set_bytes: int) -> int:
        return context_bytes(self.n, self.limbs) + resident_key_bytes(key_set_bytes)

    def plan_spec(
        self, packed: CompressedModel, slots: int, *, queries_per_item_block: int = 1, **extra: Any
    ) -> SchemeSpec:
        """The spec of a diagonal-method backend with `slots` slots: the plan's geometry and
        Galois steps, `queries_per_item_block` ciphertexts per block of items."""
        m, d = packed.model.n_items, packed.model.dim
        plan = DiagonalPlan.for_model(slots, m, d)
        return SchemeSpec(
            self.scheme,
            self.mode,
            self.parameter_set,
            m,
            d,
            plan.slots,
            plan.baby,
            plan.rotation_steps,
            ciphertexts_per_query=queries_per_item_block * plan.blocks,
            **extra,
        )


class FastSealBackend(SealBackend):
    """A SEAL backend running fast mode's `FastKernel`: evaluated by item shards, replies
    streamed as computed."""

    # Data limbs of a reply ciphertext.
    reply_limbs: ClassVar[int]

    shardable: ClassVar[bool] = True

    def blocks(self, items: int, dim: int) -> int:
        return DiagonalPlan.for_model(self.params.slots, items, dim).blocks

    def query_block_bytes(self) -> int:
        return ciphertext_bytes(self.n, self.limbs - 1)

    def reply_bytes(self, spec: SchemeSpec) -> int:
        return ciphertext_bytes(self.n, self.reply_limbs)

    def bind(
        self, prepared: PreparedModel, keys: KeySet, blobs: Blobs, options: Options = EMPTY
    ) -> ShardBound:
        kernel: FastKernel = self.load(self.public_keys(keys, blobs))
        shard = prepared.encoded

        def first(ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
            query = kernel.load_query(ciphertexts, shard)
            return bytes(kernel.partial(query, shard, should_stop).to_bytes(compr_mode="none"))

        def second(first: bytes, start: int, should_stop: StopCheck) -> Iterator[bytes]:
            return kernel.replies(kernel.load_partial(first), shard, start, should_stop)

        return ShardBound(prepared.spec, shard.blocks, first, second, kernel.nbytes)

    def combine(self, partials: list[bytes], context: Any = None) -> bytes:
        he = context if context is not None else self.context()
        loaded = [self.load_partial(he, blob) for blob in partials]
        return bytes(sum_partials(he, loaded).to_bytes(compr_mode="none"))

    @abstractmethod
    def context(self) -> Pyfhel:
        """A context of the parameter set, without keys (enough to add ciphertexts)."""

    @abstractmethod
    def load_partial(self, he: Pyfhel, blob: bytes) -> PyCtxt:
        """A validated partial first product under `he`."""

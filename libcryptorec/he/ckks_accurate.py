"""CKKS accurate mode: one fine-tuning step on the client's encrypted ratings, then prediction,
without ever building the fine-tuned A and Q (ARCHITECTURE.md section 4, rank-one form).

Plaintext reference: `CryptoRecModel.predict_accurate` with FineTuning(steps=1, eta, l2=0).
With x the client's (scaled, centred) ratings, phi its rated mask, k = |R_u|, s = ||x||^2,
the step eta_u = eta / (s k) and d = (r - rbar) * phi the user's deviations from their mean:

    p   = x A                     z = p Q^T            u = b + z
    e_b = (beta phi) * u - beta d                      (= beta e, beta = eta_u s = eta / k)
    e_g = (beta/s phi) * u - beta/s d                  (= eta_u e)
    p'  = p - e_b Q                                    (= p - eta_u s e Q)
    y'  = rbar + b + p' Q^T - (p' . p) e_g

Every per-user scalar (beta, 1/s) is folded into the five vectors the client
encrypts, so the server learns none of them. The fine-tuning regulariser is left out
(l2 = 0): at these step sizes it moves predictions by less than 1e-4, and keeping it would
need a per-user scalar on the server.

Levels (primes q0 = 60 bits, q1..q6 = 40 bits, special 60; 360 <= 438 bits for n = 16384):
p at 1, z and u at 2, e at 3, g and p' at 4, y1 and p'.p at 5, the reply at 6 (one limb).
Scales stay near 2^40 at every level; where two operands' scales differ by the primes'
distance from 2^40 (a relative 1e-6) they are set equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from Pyfhel import PyCtxt, Pyfhel, PyPtxt

from libcryptorec.compression import CompressedModel
from libcryptorec.he import backend as api
from libcryptorec.he import seal
from libcryptorec.he.backend import EMPTY, Blobs, KeySet, Options, PreparedModel
from libcryptorec.he.cancel import StopCheck, never
from libcryptorec.he.errors import InvalidCiphertextError
from libcryptorec.he.layout import DiagonalPlan
from libcryptorec.he.params import check_security
from libcryptorec.model import STARS, CryptoRecModel, FineTuning

SCHEME = "ckks"


@dataclass(frozen=True)
class AccurateParams:
    """The allow-listed CKKS parameter set for one fine-tuning step."""

    name: str = "ckks-16384-accurate1"
    n: int = 16384
    primes: tuple[int, ...] = (60, 40, 40, 40, 40, 40, 40, 60)
    scale_bits: int = 40

    @property
    def slots(self) -> int:
        return self.n // 2

    @property
    def data_limbs(self) -> int:
        return len(self.primes) - 1

    def check(self) -> None:
        check_security(self.n, self.primes)


ACCURATE_16384 = AccurateParams()


def _context(params: AccurateParams) -> Pyfhel:
    return seal.new_context(SCHEME, params.n, params.primes, scale=2.0**params.scale_bits)


class InputTransform(Protocol):
    """What client_vectors needs of a model: CryptoRecModel and backend.ClientInputs fit."""

    @property
    def n_items(self) -> int: ...

    def user_inputs(self, R: sp.csr_matrix) -> tuple[sp.csr_matrix, npt.NDArray[np.float32]]: ...


def client_vectors(
    model: InputTransform, ratings: sp.csr_matrix, eta: float
) -> tuple[list[npt.NDArray[np.float64]], float]:
    """The five (m,) vectors the client encrypts for one user (one row of ratings), and rbar.

    Order: x, beta*phi, beta*d, (beta/s)*phi, (beta/s)*d with d = (r - rbar) * phi (see the
    module doc).
    """
    if ratings.shape[0] != 1:
        raise ValueError("one user at a time")
    X, means = model.user_inputs(ratings)
    x = X.toarray().ravel().astype(np.float64)
    phi = np.zeros(model.n_items)
    phi[ratings.indices] = 1.0
    k = max(1, ratings.nnz)
    s = float(x @ x)
    beta = eta / k if s > 0 else 0.0
    gamma = eta / (s * k) if s > 1e-9 else 0.0
    # The deviations come from the ratings themselves, not from x: x may carry an offset and a
    # scaling (the model's input transform) that the error e = u - d must not see.
    centred = np.zeros(model.n_items)
    centred[ratings.indices] = ratings.data - float(means[0])
    return [x, beta * phi, beta * centred, gamma * phi, gamma * centred], float(means[0])


class AccurateClient:
    """Holds the secret key; encrypts the five vectors and decrypts the one reply block."""

    def __init__(
        self,
        plan: DiagonalPlan,
        params: AccurateParams = ACCURATE_16384,
        keys: dict[str, bytes] | None = None,
    ) -> None:
        """New keys, or the client's own saved `keys` (from `export_keys`)."""
        if plan.slots != params.slots:
            raise ValueError(f"plan has {plan.slots} slots; {params.name} has {params.slots}")
        self.params, self.plan = params, plan
        self._he = _context(params)
        seal.make_or_load_keys(self._he, plan, keys, relin=True)

    def export_keys(self) -> dict[str, bytes]:
        """All keys, the secret one included, for the client's local key cache."""
        return seal.export_all_keys(self._he, relin=True)

    def public_material(self) -> seal.SealPublicKeys:
        """Public, relinearisation and Galois keys; never the secret key."""
        return seal.export_public(self._he, SCHEME, self.params.name, self.plan, relin=True)

    def encrypt(self, vectors: list[npt.NDArray[np.float64]]) -> list[list[bytes]]:
        """Encrypt the five (m,) vectors, each as `plan.blocks` ciphertexts."""
        if len(vectors) != 5:
            raise ValueError("accurate mode sends five vectors")
        scale = 2.0**self.params.scale_bits
        return [
            [
                self._he.encryptFrac(np.ascontiguousarray(b), scale=scale).to_bytes(
                    compr_mode="none"
                )
                for b in self.plan.pad_items(v)
            ]
            for v in vectors
        ]

    def decrypt(self, blobs: list[bytes]) -> npt.NDArray[np.float64]:
        """Decrypt reply blocks into the (m,) fine-tuned predictions minus rbar."""
        if len(blobs) != self.plan.blocks:
            raise InvalidCiphertextError(f"expected {self.plan.blocks} reply blocks")
        return np.concatenate([self.decrypt_block(b) for b in blobs])[: self.plan.items]

    def decrypt_block(self, blob: bytes) -> npt.NDArray[np.float64]:
        """The n/2 values of one reply block."""
        ct = seal.load_ciphertext(self._he, blob, limbs=1, scale=None)
        return np.asarray(self._he.decryptFrac(ct), dtype=np.float64)


@dataclass
class AccurateModel:
    """Diagonals for the four products, each encoded at the level where it is used."""

    params: AccurateParams
    plan: DiagonalPlan
    A_first: seal.Diagonals  # p = x A, level 0
    Qt_second: seal.Diagonals  # z = p Q^T, level 1
    Q_first: seal.Diagonals  # g = e Q, level 3
    Qt_final: seal.Diagonals  # y1 = p' Q^T, level 4
    bias: list[npt.NDArray[np.float64]]

    @property
    def nbytes(self) -> int:
        """Resident memory: four diagonal sets, each at the top level's capacity."""
        n, limbs = self.params.n, self.params.data_limbs
        sets = (self.A_first, self.Qt_second, self.Q_first, self.Qt_final)
        return sum(seal.diagonals_bytes(d, n, limbs) for d in sets) + sum(
            b.nbytes for b in self.bias
        )

    @classmethod
    def encode(
        cls,
        A: npt.NDArray[Any],
        Q: npt.NDArray[Any],
        item_bias: npt.NDArray[Any],
        params: AccurateParams = ACCURATE_16384,
    ) -> AccurateModel:
        """Encode once per model version (seconds, and about 1.3 GB for ml-1m)."""
        plan = DiagonalPlan.for_model(params.slots, A.shape[0], A.shape[1])
        he = _context(params)
        scale = 2.0**params.scale_bits
        first_q = plan.first_diagonals(Q)
        second_q = plan.second_diagonals(Q)
        return cls(
            params=params,
            plan=plan,
            A_first=seal.encode_diagonals(he, plan.first_diagonals(A), scale, level=0),
            Qt_second=seal.encode_diagonals(he, second_q, scale, level=1),
            Q_first=seal.encode_diagonals(he, first_q, scale, level=3),
            Qt_final=seal.encode_diagonals(he, second_q, scale, level=4),
            bias=[np.ascontiguousarray(b) for b in plan.pad_items(item_bias)],
        )


class AccurateEvaluator(seal.SealEvaluator):
    """Server side of the one-step accurate mode for one client's keys."""

    def __init__(
        self, material: seal.SealPublicKeys, params: AccurateParams = ACCURATE_16384
    ) -> None:
        self.params = params
        super().__init__(_context(params), material, name=params.name, limbs=len(params.primes))

    def load_query(self, blobs: list[list[bytes]], plan: DiagonalPlan) -> list[list[PyCtxt]]:
        """Validate the five input vectors (blocks each): count, size, level and scale."""
        if len(blobs) != 5 or any(len(v) != plan.blocks for v in blobs):
            raise InvalidCiphertextError(f"expected 5 vectors of {plan.blocks} blocks")
        scale = 2.0**self.params.scale_bits
        return [
            [
                seal.load_ciphertext(self._he, b, limbs=self.params.data_limbs, scale=scale)
                for b in v
            ]
            for v in blobs
        ]

    def accurate1(
        self, query: list[list[PyCtxt]], model: AccurateModel, should_stop: StopCheck = never
    ) -> list[bytes]:
        """One fine-tuning step and prediction; serialized reply blocks (see module doc)."""
        seal.require_rotations(self.rotation_steps, model.plan)
        he, plan = self._he, model.plan
        X, M1, X2, M2, X3 = query
        p = seal.first_product(he, X, model.A_first, plan, should_stop=should_stop)  # level 1
        rotated_p = seal.baby_steps(he, p, plan, should_stop)
        u = []
        for c in range(plan.blocks):
            z = seal.giant_steps(  # level 2
                he, [rotated_p], [model.Qt_second[c]], plan, rescale=True, should_stop=should_stop
            )
            he.add_plain(z, self._plain(model.bias[c], z))
            u.append(z)
        e_b = [self._times(M1[c], u[c], minus=X2[c]) for c in range(plan.blocks)]  # level 3
        e_g = [self._times(M2[c], u[c], minus=X3[c]) for c in range(plan.blocks)]  # level 3
        g = seal.first_product(he, e_b, model.Q_first, plan, should_stop=should_stop)  # level 4
        p_new = self._align(p, g)
        he.sub(p_new, g)  # p' = p - g, level 4
        dot = self._times(p_new, self._align(p, p_new))  # level 5, p'_j p_j repeated
        dot = self._period_sum(dot, plan)  # p' . p in every slot
        rotated_new = seal.baby_steps(he, p_new, plan, should_stop)
        out = []
        for c in range(plan.blocks):
            y1 = seal.giant_steps(  # level 5
                he, [rotated_new], [model.Qt_final[c]], plan, rescale=True, should_stop=should_stop
            )
            t = self._times(dot, e_g[c])  # level 6
            y = self._align(y1, t)
            he.sub(y, t)
            he.add_plain(y, self._plain(model.bias[c], y))
            zero = he.encryptFrac(np.zeros(plan.slots), scale=y.scale)
            while zero.mod_level < y.mod_level:
                he.mod_switch_to_next(zero)
            he.add(y, zero)
            out.append(y.to_bytes(compr_mode="none"))
        return out

    def _plain(self, values: npt.NDArray[np.float64], like: PyCtxt) -> PyPtxt:
        """`values` encoded at the level and scale of the ciphertext `like`."""
        pt = self._he.encodeFrac(values, scale=like.scale)
        for _ in range(like.mod_level):
            self._he.mod_switch_to_next(pt)
        return pt

    def _align(self, ct: PyCtxt, like: PyCtxt) -> PyCtxt:
        """A copy of `ct` switched down to `like`'s level with `like`'s scale."""
        out = ct.copy()
        while out.mod_level < like.mod_level:
            self._he.mod_switch_to_next(out)
        out.set_scale(like.scale)
        return out

    def _times(self, a: PyCtxt, b: PyCtxt, minus: PyCtxt | None = None) -> PyCtxt:
        """a * b (aligned, relinearised, rescaled), minus `minus` if given."""
        he = self._he
        if a.mod_level < b.mod_level:
            a = self._align(a, b)
        elif b.mod_level < a.mod_level:
            b = self._align(b, a)
        out = he.multiply(a, b, in_new_ctxt=True)
        he.relinearize(out)
        he.rescale_to_next(out)
        if minus is not None:
            he.sub(out, self._align(minus, out))
        return out

    def _period_sum(self, ct: PyCtxt, plan: DiagonalPlan) -> PyCtxt:
        """Sum of the W slots of each period of a W-periodic ciphertext, in every slot, using
        only the baby (1) and giant (B) rotation keys."""
        he = self._he
        acc, r = ct.copy(), ct
        for _ in range(1, plan.baby):
            r = he.rotate(r, 1, in_new_ctxt=True)
            he.add(acc, r)
        total, r = acc.copy(), acc
        for _ in range(1, plan.giant):
            r = he.rotate(r, plan.baby, in_new_ctxt=True)
            he.add(total, r)
        return total


def reference_accurate1(
    model: CryptoRecModel, ratings: sp.csr_matrix, eta: float
) -> npt.NDArray[np.float64]:
    """The plaintext prediction the circuit reproduces: (m,) predictions minus rbar."""
    _, means = model.user_inputs(ratings)
    pred = model.predict_accurate(ratings, FineTuning(steps=1, eta=eta, l2=0.0))
    return np.asarray(pred[0] - means[0], dtype=np.float64)


@dataclass
class AccurateRatingsClient:
    """The `Client` of CKKS accurate mode: encrypts the five vectors of `client_vectors`
    (every per-user scalar folded in) for one user's ratings."""

    spec: api.SchemeSpec
    inputs: api.ClientInputs
    kernel: AccurateClient

    def key_blobs(self) -> dict[str, bytes]:
        return self.kernel.public_material().blobs()

    def export_keys(self) -> dict[str, bytes]:
        return self.kernel.export_keys()

    def encrypt(self, ratings: sp.csr_matrix) -> tuple[list[bytes], float]:
        vectors, rbar = client_vectors(self.inputs, ratings, self.inputs.step_size)
        return [b for v in self.kernel.encrypt(vectors) for b in v], rbar

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]:
        return self.kernel.decrypt(replies)

    def decrypt_part(self, replies: list[bytes], count: int) -> npt.NDArray[np.float64]:
        return api.decrypt_part(self.kernel.decrypt_block, replies, count)


class CkksAccurateBackend(seal.SealBackend):
    """CKKS accurate mode: one fine-tuning step on the client's encrypted ratings, then the
    prediction (n = 16384, 8 primes; depth 6), within 1e-3 of the plaintext step."""

    scheme, mode, wire = "ckks", "accurate", (1, 2)
    tolerance = 1e-3
    nominal_seconds = 4.0  # README: ml-1m stars model, 2 cores
    key_blob_names = ("public_key", "relin_key", "rotation_keys")
    relin = True
    params = ACCURATE_16384
    # Fine-tuning minimises the rating loss: a ranking model has no accurate mode.
    kinds = (STARS,)
    VECTORS = 5  # x, beta phi, beta k^a x, gamma phi, gamma k^a x

    def reference(self, model: CryptoRecModel, ratings: sp.csr_matrix) -> npt.NDArray[Any]:
        """One fine-tuning step of the model's chosen size, then the prediction."""
        _, means = model.user_inputs(ratings)
        eta = model.one_step_tuning().eta
        return np.asarray(means[0] + reference_accurate1(model, ratings, eta))

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        return self.plan_spec(packed, self.params.slots, queries_per_item_block=self.VECTORS)

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> AccurateRatingsClient:
        return AccurateRatingsClient(spec, inputs, AccurateClient(spec.plan(), self.params, keys))

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        api.unsharded(self, blocks)
        m = packed.model
        return api.PreparedModel(spec, AccurateModel.encode(m.A, m.Q, m.item_bias, self.params))

    def load(self, public: seal.SealPublicKeys) -> AccurateEvaluator:
        return AccurateEvaluator(public, self.params)

    def bind(
        self, prepared: PreparedModel, keys: KeySet, blobs: Blobs, options: Options = EMPTY
    ) -> api.Bound:
        """An evaluator for one key set: a query is the five input vectors; one fine-tuning
        step, then the prediction."""
        evaluator: AccurateEvaluator = self.load(self.public_keys(keys, blobs))
        model: AccurateModel = prepared.encoded
        blocks = model.plan.blocks

        def run(ciphertexts: list[bytes], should_stop: StopCheck) -> list[bytes]:
            vectors = [ciphertexts[i * blocks : (i + 1) * blocks] for i in range(self.VECTORS)]
            query = evaluator.load_query(vectors, model.plan)
            return evaluator.accurate1(query, model, should_stop)

        return api.BoundEvaluator(prepared.spec, run, evaluator.nbytes)


BACKEND = CkksAccurateBackend()

"""Fixed point of the integer schemes (libcryptorec/he/fixed_point.py): no admissible input can
overflow the plaintext space, and weights on their compression grid are held exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.compression import compress
from libcryptorec.he.fixed_point import MIN_INPUT_BITS, FixedPoint, choose, weight_grid
from libcryptorec.model import RANKING, CryptoRecModel
from libcryptorec.norms import max_image_norm
from tests.test_model import make_model, random_ratings

VALUE_BITS = 40  # BFV's t = 2^42, less a sign bit and t's margin


def _integer_results(model: CryptoRecModel, fp: FixedPoint, x: np.ndarray) -> list[int]:
    """b_int + x_int A_int Q_int^T in exact integers, for the (m,) input x."""
    xi = np.rint(x * 2.0**fp.input_bits).astype(np.int64).astype(object)
    A = np.rint(np.asarray(model.A, np.float64) * 2.0**fp.a_bits).astype(np.int64).astype(object)
    Q = np.rint(np.asarray(model.Q, np.float64) * 2.0**fp.q_bits).astype(np.int64).astype(object)
    b = np.rint(model.item_bias.astype(np.float64) * 2.0**fp.result_bits).astype(np.int64)
    return [int(v) + int(bi) for v, bi in zip((xi @ A) @ Q.T, b, strict=True)]


def _worst_inputs(model: CryptoRecModel) -> list[np.ndarray]:
    """Inputs of the largest admissible norm aimed at the item with the largest |A q_i|: the
    case the bound is written for."""
    A = np.asarray(model.A, np.float64)
    images = A @ np.asarray(model.Q, np.float64).T  # (m, m): column i is A q_i
    i = int(np.argmax(np.linalg.norm(images, axis=0)))
    direction = images[:, i] / np.linalg.norm(images[:, i])
    return [model.max_input_norm * direction, -model.max_input_norm * direction]


@settings(max_examples=20, deadline=None)
@given(
    m=st.integers(4, 40),
    d=st.integers(1, 8),
    scale=st.floats(0.01, 3.0),
    ranking=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_no_admissible_input_overflows(
    m: int, d: int, scale: float, ranking: bool, seed: int
) -> None:
    model = make_model(m=m, d=d, seed=seed)
    model.A *= scale
    if ranking:
        model = replace(model, kind=RANKING, rating_weight=0.2, input_offset=1.0, global_mean=0.0)
        model.item_means[:] = 0.0
    packed = compress(model, 0.0, 64)
    fp = choose(packed.model, VALUE_BITS)
    inputs = [
        packed.model.user_inputs(random_ratings(1, m, 0.5, seed + k))[0].toarray()[0]
        for k in range(5)
    ]
    for x in [*inputs, *_worst_inputs(packed.model)]:
        results = _integer_results(packed.model, fp, x)
        assert max(abs(v) for v in results) < 2**VALUE_BITS


def test_weights_on_their_grid_are_held_exactly() -> None:
    packed = compress(make_model(m=30, d=6, seed=2), 0.0, 64)
    fp = choose(packed.model, VALUE_BITS)
    assert fp.exact
    assert fp.input_bits >= MIN_INPUT_BITS
    assert (fp.a_bits, fp.q_bits) == (weight_grid(packed.A), weight_grid(packed.Q))
    for M, bits in ((packed.A, fp.a_bits), (packed.Q, fp.q_bits)):
        scaled = np.asarray(M.codebook, np.float64) * 2.0**bits
        np.testing.assert_array_equal(scaled, np.rint(scaled))


def test_weights_off_a_grid_are_rounded_with_the_room_split_evenly() -> None:
    model = make_model(m=30, d=6, seed=2)  # float32 weights: no grid up to 20 bits
    fp = choose(model, VALUE_BITS)
    assert not fp.exact
    assert fp.a_bits == fp.q_bits
    assert abs(fp.input_bits - fp.a_bits) <= 3


def test_the_image_norm_bounds_every_unit_input() -> None:
    rng = np.random.default_rng(0)
    A, Q = rng.normal(size=(25, 4)), rng.normal(size=(25, 4))
    bound = max_image_norm(A, Q)
    np.testing.assert_allclose(bound, np.linalg.norm(A @ Q.T, axis=0).max())
    x = rng.normal(size=(200, 25))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert np.abs(x @ A @ Q.T).max() <= bound + 1e-12

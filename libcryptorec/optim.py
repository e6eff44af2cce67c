"""First-order optimisers over lists of numpy arrays, updated in place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GradientSettings:
    """What every model fitted by gradient steps and early stopping is given (a model's
    config extends it, and may change the defaults): the step size, the l2 weight, at most
    `epochs` passes over the data, stopping after `patience` passes without a better
    validation score, initial weights drawn with standard deviation `init_std`, the seed."""

    learning_rate: float = 1e-3
    l2: float = 20.0
    epochs: int = 60
    patience: int = 4
    init_std: float = 0.01
    seed: int = 0

    def initial_weights(self, rng: np.random.Generator, rows: int, cols: int) -> Array:
        """(rows, cols) float32 weights drawn from N(0, init_std^2) by `rng`."""
        return (rng.standard_normal((rows, cols)) * self.init_std).astype(np.float32)


class Optimizer(Protocol):
    """Applies one update to the parameters it was built with, given their gradients."""

    lr: float

    def step(self, grads: list[Array]) -> None: ...


class Adam:
    """Adam (Kingma & Ba, 2015) with the usual betas (0.9, 0.999)."""

    def __init__(self, params: list[Array], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[Array]) -> None:
        """p -= lr * m_hat / (sqrt(v_hat) + eps) for each parameter p."""
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        scale = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= (scale * m / (np.sqrt(v) + eps)).astype(p.dtype)


class SGD:
    """Plain gradient descent, as in the paper's Algorithm 1."""

    def __init__(self, params: list[Array], lr: float) -> None:
        self.params, self.lr = params, lr

    def step(self, grads: list[Array]) -> None:
        """p -= lr * g for each parameter p."""
        for p, g in zip(self.params, grads, strict=True):
            p -= (self.lr * g).astype(p.dtype)


def make_optimizer(name: str, params: list[Array], lr: float) -> Optimizer:
    """Build the optimiser called `name` ("adam" or "sgd")."""
    if name == "adam":
        return Adam(params, lr)
    if name == "sgd":
        return SGD(params, lr)
    raise ValueError(f"unknown optimizer {name!r}; choose adam or sgd")

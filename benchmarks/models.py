"""The models benchmarks measure: a dataset's model trained on split seed 0's training users
(cached), and synthetic models of a given shape (memory and catalogue size depend on the shape,
not on the values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cryptorec.benchmarks.report import log
from libcryptorec import __version__, artifact
from libcryptorec.compression import CompressedModel, compress, threshold_for_fraction
from libcryptorec.data import Ratings, load_movielens
from libcryptorec.model import CryptoRecModel
from libcryptorec.splits import paper_split, split_matrices
from libcryptorec.training import train


def load_or_train(
    dataset: str, data_dir: Path, cache: Path, threshold: float
) -> tuple[CompressedModel, tuple[Ratings, Any]]:
    """The model trained on split seed 0's training users (cached in `cache`), compressed at
    `threshold` with 512 shared values, and (ratings, split)."""
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, 0)
    path = cache / f"{dataset}-seed0-v{__version__}.crmodel"
    dense = artifact.load(path) if path.is_file() else None
    if isinstance(dense, CryptoRecModel):
        log(f"loaded {path}")
    else:
        log(f"training the {dataset} model (split seed 0) ...")
        dense = train(split_matrices(ratings, split).train).model
        cache.mkdir(parents=True, exist_ok=True)
        artifact.save(dense, path)
        log(f"saved {path}")
    return compress(dense, threshold, 512), (ratings, split)


def synthetic_model(items: int, dim: int = 500, seed: int = 0) -> CryptoRecModel:
    """Random weights of a trained model's scale (|w| around 0.02) for `items` items."""
    rng = np.random.default_rng(seed)
    model = CryptoRecModel(
        A=(rng.standard_normal((items, dim)) * 0.02).astype(np.float32),
        Q=(rng.standard_normal((items, dim)) * 0.02).astype(np.float32),
        item_means=rng.uniform(2.5, 4.5, items).astype(np.float32),
        global_mean=3.58,
        input_power=0.5,
    )
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    return model


def synthetic_packed(items: int, dim: int = 500, seed: int = 0) -> CompressedModel:
    """A synthetic model compressed as the trainer serves them: half the weights pruned, 512
    shared values."""
    model = synthetic_model(items, dim, seed)
    return compress(model, threshold_for_fraction(model, 0.5), 512)


def item_ratings(ratings: Ratings, feed: sp.csr_matrix, user: int) -> dict[int, float]:
    """Row `user` of a feeding matrix as {item id: rating}, what a client holds."""
    row = feed[user]
    return {int(ratings.item_ids[i]): float(r) for i, r in zip(row.indices, row.data, strict=True)}

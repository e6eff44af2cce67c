"""The models benchmarks measure: a dataset's stars and ranking models trained on split seed 0's
training users (cached), and synthetic models of a given shape (memory and catalogue size depend
on the shape, not on the values)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cryptorec.benchmarks.report import log
from cryptorec.services.trainer.publish import SERVING_PRUNE_FRACTION
from libcryptorec import __version__, artifact
from libcryptorec.compression import CompressedModel, compress, threshold_for_fraction
from libcryptorec.data import Ratings, load_movielens
from libcryptorec.model import CryptoRecModel
from libcryptorec.ranking_model import train_ranking
from libcryptorec.splits import paper_split, split_matrices
from libcryptorec.training import train


def load_or_train(
    dataset: str, data_dir: Path, cache: Path, threshold: float
) -> tuple[CompressedModel, tuple[Ratings, Any]]:
    """The stars model trained on split seed 0's training users (cached in `cache`),
    compressed at `threshold` with 512 shared values, and (ratings, split)."""
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, 0)
    path = cache / f"{dataset}-seed0-v{__version__}.crmodel"
    dense = _cached(path, lambda: train(split_matrices(ratings, split).train).model)
    return compress(dense, threshold, 512), (ratings, split)


def served_ranking_model(
    dataset: str, data_dir: Path, cache: Path
) -> tuple[CompressedModel, tuple[Ratings, Any]]:
    """The ranking model trained on split seed 0's training users (cached in `cache`),
    compressed as `cryptorec train` publishes it, and (ratings, split)."""
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, 0)
    path = cache / f"{dataset}-seed0-ranking-v{__version__}.crmodel"
    dense = _cached(path, lambda: train_ranking(split_matrices(ratings, split).train).model)
    threshold = threshold_for_fraction(dense, SERVING_PRUNE_FRACTION)
    return compress(dense, threshold, 512), (ratings, split)


def _cached(path: Path, trained: Callable[[], CryptoRecModel]) -> CryptoRecModel:
    """The dense model saved at `path`, or `trained()` saved there (written by this version
    of cryptorec: another version's file is ignored by its name)."""
    dense = artifact.load(path) if path.is_file() else None
    if isinstance(dense, CryptoRecModel):
        log(f"loaded {path}")
        return dense
    log(f"training {path.stem} (split seed 0) ...")
    model = trained()
    path.parent.mkdir(parents=True, exist_ok=True)
    artifact.save(model, path)
    log(f"saved {path}")
    return model


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

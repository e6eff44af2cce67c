"""Transfer between datasets that share items (paper 3.3, Table 4).

A CryptoRec model's parameters are per item, so a model trained on a source dataset initialises
training on a target dataset wherever the two share item ids. Both datasets are restricted to
the shared items, whose dense indices then line up (ids are mapped in sorted order). The
ranking model has no iterations to start from another model: its closed form is pulled toward
the source model instead of toward zero (`train_ranking(prior=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from libcryptorec.data import IntArray, Ratings
from libcryptorec.model import rmse
from libcryptorec.ranking import ranking_scores
from libcryptorec.ranking_model import RankingConfig, train_ranking
from libcryptorec.splits import paper_split, split_matrices
from libcryptorec.training import TrainConfig, train


@dataclass(frozen=True)
class TransferResult:
    """Fast-mode RMSE on the target's new users and the epoch training stopped improving,
    without and with the source model as initialisation."""

    source: str
    target: str
    shared_items: int
    rmse_scratch: float
    epochs_scratch: int
    rmse_transfer: float
    epochs_transfer: int


def shared_item_ids(a: Ratings, b: Ratings) -> IntArray:
    """Raw item ids rated in both datasets, ascending."""
    return np.intersect1d(a.item_ids, b.item_ids)


def align(source: Ratings, target: Ratings) -> tuple[Ratings, Ratings]:
    """Restrict both datasets to their shared items, with matching dense item indices."""
    shared = shared_item_ids(source, target)
    if len(shared) == 0:
        raise ValueError(f"{source.name} and {target.name} share no item ids")
    return source.restrict_items(shared), target.restrict_items(shared)


def run_transfer(
    source: Ratings, target: Ratings, seed: int, config: TrainConfig = TrainConfig()
) -> TransferResult:
    """Train on all of `source`, then on `target` (paper split, `seed`) from scratch and from the
    source model, and score both on the target's new users."""
    src, tgt = align(source, target)
    config = replace(config, seed=seed)
    source_model = train(src.to_csr(), config).model
    split = paper_split(tgt, seed)
    m = split_matrices(tgt, split)
    R_train, feed, test = m.train, m.feed, m.test
    outcomes = []
    for init in (None, source_model):
        result = train(R_train, config, scale=tgt.scale, init=init)
        model = result.model
        outcomes.append(
            (rmse(model.clamp(model.predict_at(feed, test)), test.data), result.best_epoch)
        )
    return TransferResult(
        source=source.name,
        target=target.name,
        shared_items=src.n_items,
        rmse_scratch=outcomes[0][0],
        epochs_scratch=outcomes[0][1],
        rmse_transfer=outcomes[1][0],
        epochs_transfer=outcomes[1][1],
    )


@dataclass(frozen=True)
class RankingTransferResult:
    """The ranking model's NDCG@10 on the target's new users (split `seed`), trained from
    scratch and with the source model as its prior."""

    source: str
    target: str
    seed: int
    shared_items: int
    ndcg_scratch: float
    ndcg_transfer: float


def run_ranking_transfer(
    source: Ratings, target: Ratings, seed: int, config: RankingConfig = RankingConfig()
) -> RankingTransferResult:
    """Train the ranking model on all of `source`, then on `target`'s training users (paper
    split, `seed`) from scratch and with the source model as the prior; score both on the
    target's new users by NDCG@10."""
    src, tgt = align(source, target)
    config = replace(config, seed=seed)
    prior = train_ranking(src.to_csr(), config).model
    m = split_matrices(tgt, paper_split(tgt, seed))
    ndcg = [
        ranking_scores(
            train_ranking(m.train, config, prior=p).model.predict(m.feed), m.feed, m.test
        ).ndcg
        for p in (None, prior)
    ]
    return RankingTransferResult(source.name, target.name, seed, src.n_items, *ndcg)

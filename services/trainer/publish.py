"""`cryptorec train`: train on the server's users, compress, publish a version to the store:
the ranking model by default (what users see is a top 10), or the paper's stars model."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from cryptorec.services import versions
from cryptorec.services.store.base import ModelStore
from cryptorec.services.trainer.quote import quote
from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.data import Ratings
from libcryptorec.model import RANKING, CryptoRecModel, ModelKind
from libcryptorec.ranking_model import RankingConfig, train_ranking
from libcryptorec.training import EpochReport, TrainConfig, train

log = logging.getLogger("cryptorec.trainer")

# Half the weights: on ml-1m pruning up to 58% leaves the stars model's RMSE unchanged
# (benchmarks/results/compression-sweep-ml-1m.json) and half leaves the ranking model's NDCG@10
# unchanged (benchmarks/results/ranking-frontier-ml-1m.json); Paillier's work shrinks with every
# pruned weight. A fraction rather than a threshold, since weight scales differ between models.
SERVING_PRUNE_FRACTION = 0.5


def new_version_id() -> str:
    """A sortable, unique-enough version id: UTC time to the millisecond."""
    now = time.time()
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"


def train_and_publish(
    ratings: Ratings,
    store: ModelStore,
    *,
    kind: ModelKind = RANKING,
    rows: npt.NDArray[np.int64] | None = None,
    config: TrainConfig = TrainConfig(),
    ranking_config: RankingConfig = RankingConfig(),
    prune_fraction: float = SERVING_PRUNE_FRACTION,
    version: str | None = None,
    retain: int = 5,
    shards: int | None = None,
    measure_cost: bool = False,
) -> str:
    """Train a model of `kind` on `rows` (user indices; default all users): the ranking model
    (`ranking_config`) or the paper's stars model (`config`); compress, publish (in `shards`
    item shards; default from the catalogue size), keep the newest `retain` versions (and the
    newest of each kind); returns the new version id, now current. `measure_cost`: quote each
    scheme's cost per query (services/trainer/quote.py; a minute for ml-1m). Logs (logger
    `cryptorec.trainer`) each step of training and the publication, with their figures as
    fields."""
    R = ratings.to_csr()
    if rows is not None:
        R = R[rows]
    log.info(
        "training a %s model on %s users, %s ratings, %s items",
        kind,
        f"{R.shape[0]:,}",
        f"{R.nnz:,}",
        f"{R.shape[1]:,}",
        extra={
            "kind": kind,
            "dataset": ratings.name,
            "users": R.shape[0],
            "ratings": R.nnz,
            "items": R.shape[1],
        },
    )
    started = time.perf_counter()
    model, scores, summary = _trained(R, kind, config, ranking_config, ratings.scale)
    seconds = time.perf_counter() - started
    model.meta = {**model.meta, "dataset": ratings.name, "train_seconds": seconds}
    packed = compress(model, threshold_for_fraction(model, prune_fraction), 512)
    catalogue = [(int(i), ratings.titles.get(int(i), f"item {int(i)}")) for i in ratings.item_ids]
    version = version or new_version_id()
    costs = quote(packed) if measure_cost else None
    versions.publish(store, version, packed, catalogue, shards=shards, quote=costs)
    pruned = round(float(packed.stats.pruning_ratio), 3)
    log.info(
        "published %s model %s: %s; %.0f%% pruned, %.1f MB",
        kind,
        version,
        summary.format(**scores),
        100 * pruned,
        packed.nbytes / 1e6,
        extra={
            "version": version,
            "kind": kind,
            "train_seconds": round(seconds, 1),
            **scores,
            "pruned": pruned,
            "model_bytes": int(packed.nbytes),
            "items": len(catalogue),
        },
    )
    removed = store.retain(retain)  # never the current version, nor the newest of a kind
    if removed:
        log.info(
            "removed old versions %s (keeping %d)",
            ", ".join(removed),
            retain,
            extra={"removed": list(removed), "retain": retain},
        )
    return version


def _trained(
    R: sp.csr_matrix,
    kind: ModelKind,
    config: TrainConfig,
    ranking_config: RankingConfig,
    scale: tuple[float, float],
) -> tuple[CryptoRecModel, dict[str, Any], str]:
    """A model of `kind` trained on the (n, m) ratings R, its validation figures and the
    sentence that reports them (a format string over the figures)."""
    if kind == RANKING:
        model = train_ranking(R, ranking_config, scale=scale, log=_log_step).model
        scores = {
            "valid_ndcg": round(float(model.meta["valid_ndcg"]), 4),
            "dim": model.dim,
            "l2": round(float(model.meta["l2"]), 1),
        }
        return model, scores, "validation NDCG@10 {valid_ndcg:.4f} at rank {dim} (lambda {l2:g})"
    model = train(R, config, scale=scale, callback=_log_epoch).model
    scores = {
        "best_epoch": model.meta["best_epoch"],
        "valid_rmse_fast": round(float(model.meta["valid_rmse_fast"]), 4),
        "valid_rmse_accurate": round(float(model.meta["valid_rmse_accurate"]), 4),
    }
    return (
        model,
        scores,
        "validation RMSE fast {valid_rmse_fast:.4f}, accurate {valid_rmse_accurate:.4f}",
    )


def _log_step(line: str) -> None:
    log.info("%s", line)


def _log_epoch(report: EpochReport) -> None:
    log.info(
        "epoch %d: train RMSE %.4f, validation RMSE %.4f (%.1f s)",
        report.epoch,
        report.train_rmse,
        report.valid_rmse,
        report.seconds,
        extra={
            "epoch": report.epoch,
            "train_rmse": round(report.train_rmse, 4),
            "valid_rmse": round(report.valid_rmse, 4),
            "seconds": round(report.seconds, 2),
        },
    )


def small_config(config: TrainConfig = TrainConfig()) -> TrainConfig:
    """Settings for a quick demo model (seconds on ml-100k)."""
    return replace(config, finetune_max_steps=3, finetune_etas=(1.0, 3.0))

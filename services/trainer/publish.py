"""`cryptorec train`: train on the server's users, compress, publish a version to the store."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from cryptorec.services import versions
from cryptorec.services.store.base import Store
from cryptorec.services.trainer.quote import quote
from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.data import Ratings
from libcryptorec.training import EpochReport, TrainConfig, train

log = logging.getLogger("cryptorec.trainer")

# Half the weights: on ml-1m pruning up to 58% leaves RMSE unchanged (benchmarks/results/
# compression-sweep-ml-1m.json), and Paillier's work shrinks with every pruned weight. A
# fraction rather than a threshold, since weight scales differ between datasets.
SERVING_PRUNE_FRACTION = 0.5


def new_version_id() -> str:
    """A sortable, unique-enough version id: UTC time to the millisecond."""
    now = time.time()
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"


def train_and_publish(
    ratings: Ratings,
    store: Store,
    *,
    rows: npt.NDArray[np.int64] | None = None,
    config: TrainConfig = TrainConfig(),
    prune_fraction: float = SERVING_PRUNE_FRACTION,
    version: str | None = None,
    retain: int = 5,
    shards: int | None = None,
    measure_cost: bool = False,
) -> str:
    """Train on `rows` (user indices; default all users), compress, publish (in `shards` item
    shards; default from the catalogue size), keep the newest `retain` versions; returns the
    new version id. `measure_cost`: quote each scheme's cost per query (services/trainer/
    quote.py; a minute for ml-1m). Logs (logger `cryptorec.trainer`) one
    line per epoch and one for the publication, with their figures as fields."""
    R = ratings.to_csr()
    if rows is not None:
        R = R[rows]
    log.info(
        "training on %s users, %s ratings, %s items",
        f"{R.shape[0]:,}",
        f"{R.nnz:,}",
        f"{R.shape[1]:,}",
        extra={"dataset": ratings.name, "users": R.shape[0], "ratings": R.nnz, "items": R.shape[1]},
    )
    result = train(R, config, scale=ratings.scale, callback=_log_epoch)
    model = result.model
    model.meta = {**model.meta, "dataset": ratings.name, "train_seconds": result.seconds}
    packed = compress(model, threshold_for_fraction(model, prune_fraction), 512)
    catalogue = [(int(i), ratings.titles.get(int(i), f"item {int(i)}")) for i in ratings.item_ids]
    version = version or new_version_id()
    costs = quote(packed) if measure_cost else None
    versions.publish(store, version, packed, catalogue, shards=shards, quote=costs)
    fields = {
        "version": version,
        "train_seconds": round(result.seconds, 1),
        "best_epoch": model.meta["best_epoch"],
        "valid_rmse_fast": round(float(model.meta["valid_rmse_fast"]), 4),
        "valid_rmse_accurate": round(float(model.meta["valid_rmse_accurate"]), 4),
        "pruned": round(float(packed.stats.pruning_ratio), 3),
        "model_bytes": int(packed.nbytes),
        "items": len(catalogue),
    }
    log.info(
        "published model %s: validation RMSE fast %.4f, accurate %.4f; %.0f%% pruned, %.1f MB",
        version,
        fields["valid_rmse_fast"],
        fields["valid_rmse_accurate"],
        100 * fields["pruned"],
        fields["model_bytes"] / 1e6,
        extra=fields,
    )
    removed = store.retain(retain)  # never the current version
    if removed:
        log.info(
            "removed old versions %s (keeping %d)",
            ", ".join(removed),
            retain,
            extra={"removed": list(removed), "retain": retain},
        )
    return version


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

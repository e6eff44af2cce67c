"""`cryptorec train`: train on the server's users, compress, publish a version to the store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from cryptorec.services import versions
from cryptorec.services.store.base import Store
from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.data import Ratings
from libcryptorec.training import TrainConfig, train

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
    show_progress: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Train on `rows` (user indices; default all users), compress, publish, keep the newest
    `retain` versions; returns the new version id."""
    R = ratings.to_csr()
    if rows is not None:
        R = R[rows]
    log(f"training on {R.shape[0]:,} users, {R.nnz:,} ratings, {R.shape[1]:,} items ...")
    result = train(R, config, scale=ratings.scale, show_progress=show_progress)
    model = result.model
    model.meta = {**model.meta, "dataset": ratings.name, "train_seconds": result.seconds}
    packed = compress(model, threshold_for_fraction(model, prune_fraction), 512)
    log(
        f"trained in {result.seconds:.1f}s (validation RMSE fast "
        f"{model.meta['valid_rmse_fast']:.4f}, accurate {model.meta['valid_rmse_accurate']:.4f});"
        f" pruned "
        f"{100 * packed.stats.pruning_ratio:.1f}%"
    )
    catalogue = [(int(i), ratings.titles.get(int(i), f"item {int(i)}")) for i in ratings.item_ids]
    version = version or new_version_id()
    versions.publish(store, version, packed, catalogue)
    log(f"published model {version} to {store!r}")
    removed = store.retain(retain)  # never the current version
    if removed:
        log(f"removed old versions {', '.join(removed)} (keeping {retain})")
    return version


def small_config(config: TrainConfig = TrainConfig()) -> TrainConfig:
    """Settings for a quick demo model (seconds on ml-100k)."""
    return replace(config, finetune_max_steps=3, finetune_etas=(1.0, 3.0))

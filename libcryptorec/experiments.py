"""The accuracy experiment of paper section 4: every model under the same protocol and seeds.

CryptoRec trains on the training users only and reads new users' feeding ratings at prediction
time; the baselines train on training users plus the new users' feeding ratings, as in the
paper. All are scored by RMSE on the new users' test ratings, clamped to the rating scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from libcryptorec.baselines.autorec import AutoRecConfig, IAutoRec
from libcryptorec.baselines.biased_mf import BiasedMF, BiasedMFConfig
from libcryptorec.compression import compress
from libcryptorec.data import Ratings
from libcryptorec.model import rmse
from libcryptorec.protocol import paper_split, split_matrices
from libcryptorec.training import TrainConfig, train

CRYPTOREC_NAMES = ("CryptoRec-f", "CryptoRec-a(1)", "CryptoRec-a(n)")
BASELINE_NAMES = ("BiasedMF", "I-AutoRec")


@dataclass
class RepeatResult:
    """One seed's outcome: RMSE per model name, compression figures and training time."""

    seed: int
    rmse: dict[str, float]
    compression: dict[str, float]
    train_seconds: float
    best_epoch: int
    finetune: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompressionSetting:
    """Pruning threshold and cluster count for the sparse-quantization-reuse step."""

    threshold: float = 5e-4
    clusters: int = 512


def run_repeat(
    ratings: Ratings,
    seed: int,
    config: TrainConfig = TrainConfig(),
    compression: CompressionSetting = CompressionSetting(),
    *,
    baselines: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> RepeatResult:
    """Run every model on one draw (`seed`) of the paper split of `ratings`."""
    split = paper_split(ratings, seed)
    m = split_matrices(ratings, split)
    R_train, feed, test = m.train, m.feed, m.test

    started = time.perf_counter()
    result = train(R_train, replace(config, seed=seed), scale=ratings.scale)
    train_seconds = time.perf_counter() - started
    model = result.model
    one_step = model.one_step_tuning()
    scores = {
        "CryptoRec-f": rmse(model.clamp(model.predict_at(feed, test)), test.data),
        "CryptoRec-a(1)": rmse(
            model.clamp(model.predict_accurate_at(feed, test, one_step)), test.data
        ),
        "CryptoRec-a(n)": rmse(model.clamp(model.predict_accurate_at(feed, test)), test.data),
    }
    log(
        f"seed {seed}: CryptoRec trained in {train_seconds:.1f}s (best epoch {result.best_epoch}); "
        + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
    )

    packed = compress(model, compression.threshold, compression.clusters)
    after = rmse(packed.model.clamp(packed.model.predict_at(feed, test)), test.data)
    comp = {
        "pruning_ratio": packed.stats.pruning_ratio,
        "reuse_ratio": packed.stats.reuse_ratio,
        "reuse_ratio_products": packed.stats.reuse_ratio_products,
        "rmse_before": scores["CryptoRec-f"],
        "rmse_after": after,
    }
    log(
        f"seed {seed}: compressed: pruning {comp['pruning_ratio']:.3f}, reuse "
        f"{comp['reuse_ratio']:.3f}, RMSE {after:.4f}"
    )

    if baselines:
        R_all = ratings.to_csr(np.r_[split.train, split.feed])
        test_all = ratings.to_csr(split.test)
        for name, fitted in (
            ("BiasedMF", lambda: BiasedMF(BiasedMFConfig(seed=seed)).fit(R_all)),
            ("I-AutoRec", lambda: IAutoRec(AutoRecConfig(seed=seed)).fit(R_all)),
        ):
            t0 = time.perf_counter()
            baseline = fitted()
            pred = np.clip(baseline.predict_at(test_all), *ratings.scale)
            scores[name] = rmse(pred, test_all.data)
            log(f"seed {seed}: {name} {scores[name]:.4f} ({time.perf_counter() - t0:.1f}s)")
    return RepeatResult(
        seed=seed,
        rmse=scores,
        compression=comp,
        train_seconds=train_seconds,
        best_epoch=result.best_epoch,
        finetune={"a(n)": model.finetune.__dict__, "a(1)": one_step.__dict__},
    )


def summarise(dataset: str, repeats: list[RepeatResult]) -> dict[str, Any]:
    """Aggregate repeats into the benchmark's JSON shape (mean and std per model)."""
    names = list(repeats[0].rmse)
    models = {
        name: {
            "rmse_mean": float(np.mean([r.rmse[name] for r in repeats])),
            "rmse_std": float(np.std([r.rmse[name] for r in repeats])),
        }
        for name in names
    }
    compression = {
        key: float(np.mean([r.compression[key] for r in repeats])) for key in repeats[0].compression
    }
    return {
        "dataset": dataset,
        "repeats": len(repeats),
        "models": models,
        "compression": compression,
        "train_seconds": float(np.mean([r.train_seconds for r in repeats])),
        "per_seed": [
            {
                "seed": r.seed,
                "rmse": r.rmse,
                "best_epoch": r.best_epoch,
                "train_seconds": r.train_seconds,
                "finetune": r.finetune,
            }
            for r in repeats
        ],
    }


def compression_sweep(
    ratings: Ratings,
    seed: int,
    thresholds: tuple[float, ...],
    clusters: tuple[int, ...],
    config: TrainConfig = TrainConfig(),
) -> list[dict[str, float]]:
    """Reuse ratio and fast-mode RMSE of one trained model under each (threshold, clusters)."""
    split = paper_split(ratings, seed)
    m = split_matrices(ratings, split)
    R_train, feed, test = m.train, m.feed, m.test
    model = train(R_train, replace(config, seed=seed), scale=ratings.scale).model
    base = rmse(model.clamp(model.predict_at(feed, test)), test.data)
    rows = []
    for t in thresholds:
        for k in clusters:
            packed = compress(model, t, k)
            rows.append(
                {
                    "threshold": t,
                    "clusters": k,
                    "pruning_ratio": packed.stats.pruning_ratio,
                    "reuse_ratio": packed.stats.reuse_ratio,
                    "reuse_ratio_products": packed.stats.reuse_ratio_products,
                    "rmse_before": base,
                    "rmse_after": rmse(
                        packed.model.clamp(packed.model.predict_at(feed, test)), test.data
                    ),
                }
            )
    return rows

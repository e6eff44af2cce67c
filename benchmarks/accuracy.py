"""`cryptorec bench accuracy` and `bench compression`: the accuracy experiment of paper section 4,
every model under the same protocol and seeds, reported as the paper does (Figure 2 as a table,
Table 2, Table 4), as JSON and a plot.

CryptoRec trains on the training users only and reads new users' feeding ratings at prediction
time; the baselines train on training users plus the new users' feeding ratings, as in the
paper. All are scored by RMSE on the new users' test ratings, clamped to the rating scale.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cryptorec.benchmarks.report import log, pyplot, save_figure, table, write_json
from cryptorec.services import settings
from libcryptorec.baselines.autorec import AutoRecConfig, IAutoRec
from libcryptorec.baselines.biased_mf import BiasedMF, BiasedMFConfig
from libcryptorec.compression import compress
from libcryptorec.data import Ratings, load_movielens
from libcryptorec.download import download
from libcryptorec.model import rmse
from libcryptorec.splits import paper_split, split_matrices
from libcryptorec.training import TrainConfig, train
from libcryptorec.transfer import TransferResult, run_transfer


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


# Paper section 4: the largest RMSE loss against the best model that CryptoRec showed.
PAPER_LOSS_PERCENT = {"CryptoRec-f": 4.6, "CryptoRec-a(n)": 1.8}


def accuracy_table(summary: dict[str, Any]) -> str:
    """Figure 2 as text: RMSE mean and std per model and the loss in % against the best."""
    models = summary["models"]
    best_name = min(models, key=lambda n: models[n]["rmse_mean"])
    best = models[best_name]["rmse_mean"]
    rows = []
    for name, m in sorted(models.items(), key=lambda kv: kv[1]["rmse_mean"]):
        bound = PAPER_LOSS_PERCENT.get(name)
        rows.append(
            [
                name,
                f"{m['rmse_mean']:.4f}",
                f"{m['rmse_std']:.4f}",
                f"{100 * (m['rmse_mean'] / best - 1):.2f}%",
                f"{bound:.1f}%" if bound is not None else "",
            ]
        )
    return "\n".join(
        [
            f"Accuracy on {summary['dataset']} ({summary['repeats']} repeats; users 80/20, "
            "new users' ratings 90/10)",
            table(["model", "RMSE", "std", "loss vs best", "paper bound"], rows),
            f"best: {best_name}; CryptoRec training {summary['train_seconds']:.1f}s per run",
        ]
    )


def compression_table(summary: dict[str, Any]) -> str:
    """Table 2 as text: pruning and reuse ratio, with RMSE before and after compression."""
    c = summary["compression"]
    return "\n".join(
        [
            "Sparse-quantization-reuse (Table 2; paper on ml1m: pruning 9.2%, reuse 90.5%)",
            f"pruning ratio {100 * c['pruning_ratio']:.1f}%   reuse ratio (rows of A and Q) "
            f"{100 * c['reuse_ratio']:.1f}%   as the products use them (A, Q^T) "
            f"{100 * c['reuse_ratio_products']:.1f}%",
            f"RMSE before {c['rmse_before']:.4f}   after {c['rmse_after']:.4f}   "
            f"change {c['rmse_after'] - c['rmse_before']:+.4f}",
        ]
    )


def transfer_table(results: list[TransferResult]) -> str:
    """Table 4 as text: target RMSE and best epoch without and with transfer."""
    rows = [
        [
            f"{r.source} : {r.target}",
            str(r.shared_items),
            f"{r.rmse_scratch:.4f}",
            str(r.epochs_scratch),
            f"{r.rmse_transfer:.4f}",
            str(r.epochs_transfer),
        ]
        for r in results
    ]
    return (
        "Transfer (Table 4): fast-mode RMSE on the target's new users; epoch = best epoch\n"
        + table(["src : tgt", "items", "scratch", "epoch", "transfer", "epoch"], rows)
    )


def sweep_table(rows: list[dict[str, float]]) -> str:
    """Threshold x clusters against pruning, reuse (both orientations) and RMSE, as text."""
    header = ["threshold", "clusters", "pruned", "reuse A,Q", "reuse A,Q^T", "RMSE", "change"]
    return table(
        header,
        [
            [
                f"{r['threshold']:.4g}",
                str(int(r["clusters"])),
                f"{100 * r['pruning_ratio']:.1f}%",
                f"{100 * r['reuse_ratio']:.1f}%",
                f"{100 * r['reuse_ratio_products']:.1f}%",
                f"{r['rmse_after']:.4f}",
                f"{r['rmse_after'] - r['rmse_before']:+.4f}",
            ]
            for r in rows
        ],
    )


def run_sweep(
    dataset: str,
    data_dir: Path,
    thresholds: tuple[float, ...],
    clusters: tuple[int, ...],
    json_out: Path | None,
) -> list[dict[str, float]]:
    """Train once (seed 0) and print/write the compression sweep."""
    rows = compression_sweep(load_movielens(dataset, data_dir), 0, thresholds, clusters)
    print(f"Compression sweep on {dataset} (seed 0; fast-mode RMSE on new users' test ratings)")
    print(sweep_table(rows))
    write_json(json_out, {"dataset": dataset, "rows": rows})
    return rows


def plot(summary: dict[str, Any], path: Path) -> None:
    """Bar chart of RMSE per model with std error bars and % loss labels, written as PNG."""
    plt = pyplot()
    models = sorted(summary["models"].items(), key=lambda kv: kv[1]["rmse_mean"])
    names = [n for n, _ in models]
    means = [m["rmse_mean"] for _, m in models]
    stds = [m["rmse_std"] for _, m in models]
    best = min(means)
    colors = ["#c0392b" if n.startswith("CryptoRec") else "#7f8c8d" for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    bars = ax.bar(names, means, yerr=stds, color=colors, capsize=4)
    for bar, mean, std in zip(bars, means, stds, strict=True):
        ax.annotate(
            f"{mean:.4f}\n+{100 * (mean / best - 1):.1f}%",
            (bar.get_x() + bar.get_width() / 2, mean + std),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_ylim(min(means) - 0.03, max(m + s for m, s in zip(means, stds, strict=True)) + 0.015)
    ax.set_ylabel("test RMSE (lower is better)")
    ax.set_title(f"{summary['dataset']}: accuracy, {summary['repeats']} repeats (paper Fig. 2)")
    ax.tick_params(axis="x", labelsize=8)
    save_figure(fig, path)


def run(
    dataset: str,
    data_dir: Path,
    repeats: int,
    json_out: Path | None,
    plot_out: Path | None,
    transfer: bool,
    baselines: bool,
    compression: CompressionSetting,
) -> dict[str, Any]:
    """Run the experiment, print the tables, write JSON and PNG; returns the summary."""
    ratings = load_movielens(dataset, data_dir)
    log(
        f"{dataset}: {len(ratings):,} ratings, {ratings.n_users:,} users, "
        f"{ratings.n_items:,} rated items"
    )
    started = time.perf_counter()
    results = [
        run_repeat(ratings, seed, compression=compression, baselines=baselines, log=log)
        for seed in range(repeats)
    ]
    summary = summarise(dataset, results)
    print(accuracy_table(summary))
    print()
    print(compression_table(summary))
    if transfer:
        pair = [load_movielens("ml-1m", data_dir), load_movielens("ml-latest-small", data_dir)]
        transfers = [run_transfer(pair[0], pair[1], seed=0), run_transfer(pair[1], pair[0], seed=0)]
        summary["transfer"] = [asdict(t) for t in transfers]
        print()
        print(transfer_table(transfers))
    summary["wall_seconds"] = time.perf_counter() - started
    write_json(json_out, summary)
    if plot_out:
        plot(summary, plot_out)
    return summary


HELP = "paper Figure 2 / Table 2 / Table 4 under the paper's protocol"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    settings.add(parser, "data_dir", "download_url")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--plot", type=Path, help="PNG of the accuracy table (default: JSON path .png)"
    )
    parser.add_argument("--prune-threshold", type=float, default=5e-4)
    parser.add_argument("--clusters", type=int, default=512)
    parser.add_argument(
        "--no-transfer", action="store_true", help="skip the ml-1m/ml-latest-small transfer"
    )
    parser.add_argument("--no-baselines", action="store_true", help="CryptoRec only")
    parser.add_argument(
        "--download", action="store_true", help="fetch missing datasets from GroupLens first"
    )


def main(args: argparse.Namespace) -> int:
    if args.download:
        needed = [args.dataset] + ([] if args.no_transfer else ["ml-1m", "ml-latest-small"])
        for name in dict.fromkeys(needed):
            download(name, args.data_dir, args.download_url)
    run(
        dataset=args.dataset,
        data_dir=args.data_dir,
        repeats=args.repeats,
        json_out=args.json,
        plot_out=args.plot or (args.json.with_suffix(".png") if args.json else None),
        transfer=not args.no_transfer,
        baselines=not args.no_baselines,
        compression=CompressionSetting(args.prune_threshold, args.clusters),
    )
    return 0

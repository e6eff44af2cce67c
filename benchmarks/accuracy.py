"""`cryptorec bench accuracy` and `bench compression`: the accuracy experiment of paper section 4,
every model under the same protocol and seeds, reported as the paper does (Figure 2 as a table,
Table 2, Table 4), with top-N ranking beside it, as JSON and a plot.

CryptoRec's models (the paper's stars model and the served ranking model) train on the training
users only and read new users' feeding ratings at prediction time; the baselines train on
training users plus the new users' feeding ratings, as in the paper. Rating models are scored by
RMSE on the new users' test ratings, clamped to the rating scale; every model by its top 10 of
the items outside each new user's feeding ratings (`libcryptorec.ranking`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from cryptorec.benchmarks.driver import Driver, plot_path
from cryptorec.benchmarks.library_baselines import (
    LibrarySettings,
    SurpriseItemKNN,
    SurpriseSVD,
    available,
    tune,
)
from cryptorec.benchmarks.ranking_baselines import ranking_baselines
from cryptorec.benchmarks.report import log, pyplot, save_figure, table, write_json
from cryptorec.services.trainer.publish import SERVING_PRUNE_FRACTION
from libcryptorec.baselines.autorec import AutoRecConfig, IAutoRec
from libcryptorec.baselines.biased_mf import BiasedMF, BiasedMFConfig
from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.data import Ratings, load_movielens
from libcryptorec.download import download
from libcryptorec.model import CryptoRecModel, rmse
from libcryptorec.ranking import ranking_scores
from libcryptorec.ranking_model import RankingConfig, train_ranking
from libcryptorec.splits import paper_split, split_matrices
from libcryptorec.training import TrainConfig, train
from libcryptorec.transfer import (
    RankingTransferResult,
    TransferResult,
    run_ranking_transfer,
    run_transfer,
)

DRIVER = Driver(
    "paper Figure 2 / Table 2 / Table 4 under the paper's protocol",
    dataset="ml-1m",
    download=True,
    plot="the accuracy table",
)

Scale = tuple[float, float]

# The model `cryptorec train` publishes by default, as the tables name it.
SERVED = "CryptoRec-rank"


@dataclass
class RepeatResult:
    """One seed's outcome: RMSE per rating model, ranking metrics per model, compression
    figures (both CryptoRec models) and training times."""

    seed: int
    rmse: dict[str, float]
    compression: dict[str, float]
    train_seconds: float
    best_epoch: int
    finetune: dict[str, Any] = field(default_factory=dict)
    ranking: dict[str, dict[str, float]] = field(default_factory=dict)
    ranking_model: dict[str, Any] = field(default_factory=dict)
    baseline_tuning: dict[str, Any] = field(default_factory=dict)


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
    library_settings: LibrarySettings | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> RepeatResult:
    """Run every model on one draw (`seed`) of the paper split of `ratings`: RMSE of the rating
    models on the new users' test ratings and ranking metrics of every model over every item
    outside their feeding ratings. `library_settings`: add the Surprise baselines with these
    hyperparameters."""
    split = paper_split(ratings, seed)
    m = split_matrices(ratings, split)
    R_train, feed, test = m.train, m.feed, m.test

    started = time.perf_counter()
    result = train(R_train, replace(config, seed=seed), scale=ratings.scale)
    train_seconds = time.perf_counter() - started
    model = result.model
    one_step = model.one_step_tuning()
    # Every model scores every item for every new user: RMSE reads the test positions,
    # the ranking metrics the whole rows.
    full = {
        "CryptoRec-f": model.predict(feed),
        "CryptoRec-a(1)": model.predict_accurate(feed, one_step),
        "CryptoRec-a(n)": model.predict_accurate(feed),
    }
    log(
        f"seed {seed}: CryptoRec trained in {train_seconds:.1f}s (best epoch {result.best_epoch}); "
        + ", ".join(f"{k} {_rmse_at(v, test, ratings.scale):.4f}" for k, v in full.items())
    )

    comp = _compressed(model, compression, feed, test, ratings.scale)
    log(
        f"seed {seed}: compressed: pruning {comp['pruning_ratio']:.3f}, reuse "
        f"{comp['reuse_ratio']:.3f}, RMSE {comp['rmse_after']:.4f}"
    )

    ranked, ranking_model = _served_ranking_model(R_train, feed, test, seed, ratings.scale)
    tuning: dict[str, Any] = {}
    if baselines:
        R_all = ratings.to_csr(np.r_[split.train, split.feed])
        new_users = np.asarray(split.new_users, dtype=np.int64)
        for name, fit in _baselines(R_all, ratings.scale, seed, library_settings):
            t0 = time.perf_counter()
            full[name] = np.asarray(fit().scores(new_users), dtype=np.float64)
            log(
                f"seed {seed}: {name} {_rmse_at(full[name], test, ratings.scale):.4f} "
                f"({time.perf_counter() - t0:.1f}s)"
            )
        top_n, tuning = ranking_baselines(R_train, seed)
        for name, fit_top_n in top_n:
            t0 = time.perf_counter()
            ranked[name] = np.asarray(fit_top_n(R_all).scores(new_users), dtype=np.float64)
            ndcg = ranking_scores(ranked[name], feed, test).ndcg
            log(f"seed {seed}: {name} NDCG@10 {ndcg:.4f} ({time.perf_counter() - t0:.1f}s)")
    scores = {name: _rmse_at(s, test, ratings.scale) for name, s in full.items()}
    every: dict[str, npt.NDArray[np.floating[Any]]] = {**full, **ranked}
    ranking = {name: ranking_scores(s, feed, test).as_json() for name, s in every.items()}
    return RepeatResult(
        seed=seed,
        rmse=scores,
        compression=comp,
        train_seconds=train_seconds,
        best_epoch=result.best_epoch,
        finetune={"a(n)": model.finetune.__dict__, "a(1)": one_step.__dict__},
        ranking=ranking,
        ranking_model=ranking_model,
        baseline_tuning=tuning,
    )


def _compressed(
    model: CryptoRecModel,
    compression: CompressionSetting,
    feed: sp.csr_matrix,
    test: sp.csr_matrix,
    scale: Scale,
) -> dict[str, float]:
    """What compressing `model` keeps: its pruning and reuse ratios, and the fast-mode RMSE
    on the new users' test ratings before and after."""
    packed = compress(model, compression.threshold, compression.clusters)
    return {
        "pruning_ratio": packed.stats.pruning_ratio,
        "reuse_ratio": packed.stats.reuse_ratio,
        "reuse_ratio_products": packed.stats.reuse_ratio_products,
        "rmse_before": _rmse_at(model.predict(feed), test, scale),
        "rmse_after": _rmse_at(packed.model.predict(feed), test, scale),
    }


def _served_ranking_model(
    R_train: sp.csr_matrix, feed: sp.csr_matrix, test: sp.csr_matrix, seed: int, scale: Scale
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, Any]]:
    """The ranking model as `cryptorec train` publishes it (trained on R_train, compressed at
    the serving settings): its scores for the new users (feed (u, m)) under SERVED, and its
    validation choices, training time and NDCG@10 before and after compression (512 and 256
    shared values)."""
    started = time.perf_counter()
    result = train_ranking(R_train, replace(RankingConfig(), seed=seed), scale=scale)
    seconds = time.perf_counter() - started
    model = result.model
    threshold = threshold_for_fraction(model, SERVING_PRUNE_FRACTION)
    served = compress(model, threshold, 512)
    scores = np.asarray(served.model.predict(feed), dtype=np.float64)
    ndcg = {
        "dense": ranking_scores(model.predict(feed), feed, test).ndcg,
        "served": ranking_scores(scores, feed, test).ndcg,
        "clusters_256": ranking_scores(
            compress(model, threshold, 256).model.predict(feed), feed, test
        ).ndcg,
    }
    log(
        f"seed {seed}: {SERVED} trained in {seconds:.1f}s (rank {model.dim}, lambda "
        f"{model.meta['l2']:.0f}); NDCG@10 {ndcg['dense']:.4f} dense, {ndcg['served']:.4f} "
        f"served (512 shared values, {100 * served.stats.pruning_ratio:.0f}% pruned), "
        f"{ndcg['clusters_256']:.4f} with 256"
    )
    assert result.chosen is not None
    return {SERVED: scores}, {
        "dim": model.dim,
        "l2": float(model.meta["l2"]),
        "valid_ndcg": result.chosen.ndcg,
        "train_seconds": seconds,
        "ndcg": ndcg,
        "pruning_ratio": served.stats.pruning_ratio,
        "reuse_ratio_products": served.stats.reuse_ratio_products,
        "frontier": [c.to_dict() for c in result.frontier],
    }


def _rmse_at(scores: npt.NDArray[np.floating[Any]], test: sp.csr_matrix, scale: Scale) -> float:
    """RMSE of (u, m) `scores`, clamped to the rating scale, at the ratings of `test` (u, m)."""
    at = test.tocoo()
    return rmse(np.clip(scores[at.row, at.col], *scale), at.data)


def _baselines(
    R: sp.csr_matrix, scale: Scale, seed: int, library: LibrarySettings | None
) -> list[tuple[str, Callable[[], Any]]]:
    """(name, fit) for every baseline: each fit returns a model with `scores(users)`."""
    out: list[tuple[str, Callable[[], Any]]] = [
        ("BiasedMF", lambda: BiasedMF(BiasedMFConfig(seed=seed)).fit(R)),
        ("I-AutoRec", lambda: IAutoRec(AutoRecConfig(seed=seed)).fit(R)),
    ]
    if library is not None:
        out += [
            (SurpriseSVD.name, lambda: SurpriseSVD(R, scale, library.svd, seed)),
            (SurpriseItemKNN.name, lambda: SurpriseItemKNN(R, scale, library.knn)),
        ]
    return out


def summarise(dataset: str, repeats: list[RepeatResult]) -> dict[str, Any]:
    """Aggregate repeats into the benchmark's JSON shape (mean and std per model; RMSE for the
    rating models only)."""
    models: dict[str, dict[str, float]] = {}
    for name in repeats[0].ranking:
        entry = models.setdefault(name, {})
        if name in repeats[0].rmse:
            entry["rmse_mean"] = float(np.mean([r.rmse[name] for r in repeats]))
            entry["rmse_std"] = float(np.std([r.rmse[name] for r in repeats]))
        for metric in repeats[0].ranking[name]:
            values = [r.ranking[name][metric] for r in repeats]
            entry[metric] = float(np.mean(values))
            entry[f"{metric}_std"] = float(np.std(values))
    compression = {
        key: float(np.mean([r.compression[key] for r in repeats])) for key in repeats[0].compression
    }
    return {
        "dataset": dataset,
        "repeats": len(repeats),
        "served": SERVED,
        "models": models,
        "compression": compression,
        "train_seconds": float(np.mean([r.train_seconds for r in repeats])),
        "ranking_model": {
            "dim": [r.ranking_model["dim"] for r in repeats],
            "train_seconds": float(np.mean([r.ranking_model["train_seconds"] for r in repeats])),
            "ndcg": {
                key: float(np.mean([r.ranking_model["ndcg"][key] for r in repeats]))
                for key in repeats[0].ranking_model["ndcg"]
            },
        },
        "per_seed": [
            {
                "seed": r.seed,
                "rmse": r.rmse,
                "ranking": r.ranking,
                "best_epoch": r.best_epoch,
                "train_seconds": r.train_seconds,
                "finetune": r.finetune,
                "ranking_model": r.ranking_model,
                "baseline_tuning": r.baseline_tuning,
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
    """Figure 2 as text: RMSE mean and std per rating model and the loss in % against the
    best."""
    models = {n: m for n, m in summary["models"].items() if "rmse_mean" in m}
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


RANKING_METRICS = ("ndcg@10", "recall@10", "precision@10", "mrr", "coverage@10")


def ranking_table(summary: dict[str, Any]) -> str:
    """Ranking quality per model (means over repeats, NDCG@10's std), best NDCG first; the
    served model marked."""
    models = summary["models"]
    served = summary.get("served")
    rows = [
        [
            f"{name} (served)" if name == served else name,
            f"{m['ndcg@10']:.4f}",
            f"{m.get('ndcg@10_std', 0.0):.4f}",
            *(f"{m[k]:.4f}" for k in RANKING_METRICS[1:]),
        ]
        for name, m in sorted(models.items(), key=lambda kv: -kv[1]["ndcg@10"])
    ]
    return "\n".join(
        [
            "Top 10 of every item outside a new user's feeding ratings; "
            "relevant = test rating >= 4",
            table(["model", "ndcg@10", "std", *RANKING_METRICS[1:]], rows),
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


def ranking_transfer_table(results: list[RankingTransferResult]) -> str:
    """Transfer of the ranking model: the target's new users' NDCG@10 without and with the
    source model as the prior."""
    rows = [
        [
            f"{r.source} : {r.target}",
            str(r.shared_items),
            f"{r.ndcg_scratch:.4f}",
            f"{r.ndcg_transfer:.4f}",
        ]
        for r in results
    ]
    return (
        "Transfer of the ranking model: NDCG@10 on the target's new users; the source model is "
        "the prior\n" + table(["src : tgt", "items", "scratch", "transfer"], rows)
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
    """RMSE per model (std error bars, % loss against the best) beside NDCG@10, Recall@10 and
    MRR per model, written as PNG."""
    plt = pyplot()
    rated = {n: m for n, m in summary["models"].items() if "rmse_mean" in m}
    models = sorted(rated.items(), key=lambda kv: kv[1]["rmse_mean"])
    names = [n for n, _ in models]
    means = [m["rmse_mean"] for _, m in models]
    stds = [m["rmse_std"] for _, m in models]
    best = min(means)
    colors = ["#c0392b" if n.startswith("CryptoRec") else "#7f8c8d" for n in names]
    fig, (ax, right) = plt.subplots(1, 2, figsize=(13, 4.2), dpi=120)
    bars = ax.bar(names, means, yerr=stds, color=colors, capsize=4)
    for bar, mean, std in zip(bars, means, stds, strict=True):
        ax.annotate(
            f"{mean:.4f}\n+{100 * (mean / best - 1):.1f}%",
            (bar.get_x() + bar.get_width() / 2, mean + std),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_ylim(min(means) - 0.03, max(m + s for m, s in zip(means, stds, strict=True)) + 0.02)
    ax.set_ylabel("test RMSE (lower is better)")
    ax.set_title(f"{summary['dataset']}: RMSE, {summary['repeats']} repeats (paper Fig. 2)")
    ranked = sorted(summary["models"].items(), key=lambda kv: -kv[1]["ndcg@10"])
    metrics = ("ndcg@10", "recall@10", "mrr")
    width = 0.8 / len(metrics)
    x = np.arange(len(ranked))
    for j, metric in enumerate(metrics):
        right.bar(x + j * width, [m[metric] for _, m in ranked], width, label=metric)
    served = summary.get("served")
    right.set_xticks(
        x + width * (len(metrics) - 1) / 2,
        [f"{n} (served)" if n == served else n for n, _ in ranked],
    )
    right.set_ylabel("higher is better")
    right.set_title("top-10 ranking, every model (relevant: test rating >= 4)")
    right.set_ylim(0, 1.2 * max(m[k] for _, m in ranked for k in metrics))
    right.legend(fontsize=8, loc="upper center", ncol=len(metrics))
    for axis in (ax, right):
        axis.tick_params(axis="x", labelsize=7, rotation=30)
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
    library: LibrarySettings | None = None,
    tune_library: bool = False,
) -> dict[str, Any]:
    """Run the experiment, print the tables, write JSON and PNG; returns the summary.
    `library`: the Surprise baselines' settings (None: without them)."""
    ratings = load_movielens(dataset, data_dir)
    log(
        f"{dataset}: {len(ratings):,} ratings, {ratings.n_users:,} users, "
        f"{ratings.n_items:,} rated items"
    )
    started = time.perf_counter()
    tuning: list[dict[str, Any]] = []
    if tune_library:
        split = paper_split(ratings, 0)
        R_all = ratings.to_csr(np.r_[split.train, split.feed])
        library, tuning = tune(R_all, ratings.scale, seed=0, log=log)
        log(f"library baselines chosen on validation ratings: {library}")
    results = [
        run_repeat(
            ratings,
            seed,
            compression=compression,
            baselines=baselines,
            library_settings=library,
            log=log,
        )
        for seed in range(repeats)
    ]
    summary = summarise(dataset, results)
    if library is not None and baselines:
        summary["library_settings"] = asdict(library)
        if tuning:
            summary["library_tuning"] = tuning
    print(accuracy_table(summary))
    print()
    print(ranking_table(summary))
    print()
    print(compression_table(summary))
    if transfer:
        pair = [load_movielens("ml-1m", data_dir), load_movielens("ml-latest-small", data_dir)]
        transfers = [run_transfer(pair[0], pair[1], seed=0), run_transfer(pair[1], pair[0], seed=0)]
        summary["transfer"] = [asdict(t) for t in transfers]
        print()
        print(transfer_table(transfers))
        ranked = [
            run_ranking_transfer(source, target, seed)
            for source, target in (pair, pair[::-1])
            for seed in range(repeats)
        ]
        summary["ranking_transfer"] = [asdict(t) for t in ranked]
        print()
        print(ranking_transfer_table(ranked))
    summary["wall_seconds"] = time.perf_counter() - started
    write_json(json_out, summary)
    if plot_out:
        plot(summary, plot_out)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repeats", type=int, default=5, help="seeds of the split (default: %(default)s)"
    )
    parser.add_argument(
        "--prune-threshold",
        type=float,
        default=5e-4,
        help="weights below this are pruned (default: %(default)s)",
    )
    parser.add_argument(
        "--clusters", type=int, default=512, help="shared values (default: %(default)s)"
    )
    parser.add_argument(
        "--no-transfer", action="store_true", help="skip the ml-1m/ml-latest-small transfer"
    )
    parser.add_argument("--no-baselines", action="store_true", help="CryptoRec only")
    parser.add_argument(
        "--no-library-baselines",
        action="store_true",
        help="skip Surprise's SVD and item-KNN (skipped anyway when Surprise is not installed)",
    )
    parser.add_argument(
        "--tune-library",
        action="store_true",
        help="choose the Surprise baselines' settings on validation ratings of seed 0 first "
        "(a few minutes; the defaults are the choice of such a run)",
    )


def main(args: argparse.Namespace) -> int:
    library = not args.no_library_baselines and not args.no_baselines
    if library and not available():
        log("Surprise is not installed (pip install scikit-surprise): library baselines skipped")
        library = False
    if args.download:
        needed = [args.dataset] + ([] if args.no_transfer else ["ml-1m", "ml-latest-small"])
        for name in dict.fromkeys(needed):
            download(name, args.data_dir, args.download_url)
    run(
        dataset=args.dataset,
        data_dir=args.data_dir,
        repeats=args.repeats,
        json_out=args.json,
        plot_out=plot_path(args),
        transfer=not args.no_transfer,
        baselines=not args.no_baselines,
        compression=CompressionSetting(args.prune_threshold, args.clusters),
        library=LibrarySettings() if library else None,
        tune_library=library and args.tune_library,
    )
    return 0

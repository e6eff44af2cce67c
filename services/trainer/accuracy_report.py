"""`cryptorec bench accuracy`: run the paper's accuracy experiment and report it as the paper
does (Figure 2 as a table, Table 2, Table 4), as JSON and as a PNG plot."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from libcryptorec.data import load_movielens
from libcryptorec.experiments import CompressionSetting, run_repeat, summarise
from libcryptorec.transfer import TransferResult, run_transfer

# Paper section 4: the largest RMSE loss against the best model that CryptoRec showed.
PAPER_LOSS_PERCENT = {"CryptoRec-f": 4.6, "CryptoRec-a(n)": 1.8}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def accuracy_table(summary: dict[str, Any]) -> str:
    """Figure 2 as text: RMSE mean and std per model and the loss in % against the best."""
    models = summary["models"]
    best_name = min(models, key=lambda n: models[n]["rmse_mean"])
    best = models[best_name]["rmse_mean"]
    lines = [
        f"Accuracy on {summary['dataset']} ({summary['repeats']} repeats; users 80/20, "
        "new users' ratings 90/10)",
        f"{'model':<16}{'RMSE':>8}{'std':>8}{'loss vs best':>14}{'paper bound':>13}",
    ]
    for name, m in sorted(models.items(), key=lambda kv: kv[1]["rmse_mean"]):
        loss = 100 * (m["rmse_mean"] / best - 1)
        bound = PAPER_LOSS_PERCENT.get(name)
        lines.append(
            f"{name:<16}{m['rmse_mean']:>8.4f}{m['rmse_std']:>8.4f}{loss:>13.2f}%"
            + (f"{bound:>12.1f}%" if bound is not None else "")
        )
    lines.append(f"best: {best_name}; CryptoRec training {summary['train_seconds']:.1f}s per run")
    return "\n".join(lines)


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
    lines = [
        "Transfer (Table 4): fast-mode RMSE on the target's new users; epoch = best epoch",
        f"{'src : tgt':<34}{'items':>7}{'scratch':>10}{'epoch':>7}{'transfer':>10}{'epoch':>7}",
    ]
    for r in results:
        lines.append(
            f"{r.source + ' : ' + r.target:<34}{r.shared_items:>7}{r.rmse_scratch:>10.4f}"
            f"{r.epochs_scratch:>7}{r.rmse_transfer:>10.4f}{r.epochs_transfer:>7}"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, float]]) -> str:
    """Threshold x clusters against pruning, reuse (both orientations) and RMSE, as text."""
    lines = [
        f"{'threshold':>10}{'clusters':>9}{'pruned':>8}{'reuse A,Q':>11}{'reuse A,Q^T':>13}"
        f"{'RMSE':>8}{'change':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['threshold']:>10.4g}{int(r['clusters']):>9}{100 * r['pruning_ratio']:>7.1f}%"
            f"{100 * r['reuse_ratio']:>10.1f}%{100 * r['reuse_ratio_products']:>12.1f}%"
            f"{r['rmse_after']:>8.4f}{r['rmse_after'] - r['rmse_before']:>+9.4f}"
        )
    return "\n".join(lines)


def run_sweep(
    dataset: str,
    data_dir: Path,
    thresholds: tuple[float, ...],
    clusters: tuple[int, ...],
    json_out: Path | None,
) -> list[dict[str, float]]:
    """Train once (seed 0) and print/write the compression sweep."""
    from libcryptorec.experiments import compression_sweep

    rows = compression_sweep(load_movielens(dataset, data_dir), 0, thresholds, clusters)
    print(f"Compression sweep on {dataset} (seed 0; fast-mode RMSE on new users' test ratings)")
    print(sweep_table(rows))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"dataset": dataset, "rows": rows}, indent=2) + "\n")
        _log(f"wrote {json_out}")
    return rows


def plot(summary: dict[str, Any], path: Path) -> None:
    """Bar chart of RMSE per model with std error bars and % loss labels, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
    _log(
        f"{dataset}: {len(ratings):,} ratings, {ratings.n_users:,} users, "
        f"{ratings.n_items:,} rated items"
    )
    started = time.perf_counter()
    results = [
        run_repeat(ratings, seed, compression=compression, baselines=baselines, log=_log)
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
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2) + "\n")
        _log(f"wrote {json_out}")
    if plot_out:
        plot(summary, plot_out)
        _log(f"wrote {plot_out}")
    return summary

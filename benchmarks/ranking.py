"""`cryptorec bench ranking`: the ranking model's cost/quality frontier over its rank d.

The encrypted cost grows with d (both products walk d diagonals); quality, by validation
NDCG@10, stops growing well before d = 500. For each d of the grid: the validation NDCG@10
(held-out training users of split seed 0, as training chooses; at each lambda and at the
lambda training chose), the new users' test NDCG@10 of the served model, and under CKKS fast
mode the server's seconds per query (median over held-out users, one core), the bytes of a
query and of the client's keys. Also what compression costs (512 and 256 shared values).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cryptorec.benchmarks.driver import Driver, plot_path
from cryptorec.benchmarks.he import measure
from cryptorec.benchmarks.report import log, pyplot, save_figure, table, write_json
from cryptorec.services.trainer.publish import SERVING_PRUNE_FRACTION
from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.data import load_movielens
from libcryptorec.download import download
from libcryptorec.ranking import ranking_scores
from libcryptorec.ranking_model import RankingConfig, choose, fit_ranks, validation_frontier
from libcryptorec.splits import paper_split, split_matrices

DRIVER = Driver(
    "the ranking model's rank against validation NDCG@10 and CKKS cost",
    dataset="ml-1m",
    download=True,
    plot="the frontier",
)

DIMS = (32, 64, 128, 256, 500)


def run(dataset: str, data_dir: Path, queries: int) -> dict[str, Any]:
    """The frontier on split seed 0 of `dataset`: one row per rank of DIMS."""
    ratings = load_movielens(dataset, data_dir)
    m = split_matrices(ratings, paper_split(ratings, 0))
    config = RankingConfig(dims=DIMS)
    frontier = validation_frontier(m.train, config, log=log)
    chosen = choose(frontier, config.dim_standard_errors)
    log(f"training chooses rank {chosen.dim} at lambda {chosen.l2:.0f}")
    models = fit_ranks(m.train, config, chosen.l2, DIMS, scale=ratings.scale)
    rows = []
    for d, model in models.items():
        threshold = threshold_for_fraction(model, SERVING_PRUNE_FRACTION)
        served = compress(model, threshold, 512)
        at_d = [c for c in frontier if c.dim == d]
        cost = measure("ckks", "fast", served, m.feed, m.test, users=queries, progress=log)
        rows.append(
            {
                "dim": d,
                "valid_ndcg": next(c.ndcg for c in at_d if c.l2 == chosen.l2),
                "valid_ndcg_best_lambda": max(c.ndcg for c in at_d),
                "test_ndcg": ranking_scores(served.model.predict(m.feed), m.feed, m.test).ndcg,
                "test_ndcg_dense": ranking_scores(model.predict(m.feed), m.feed, m.test).ndcg,
                "test_ndcg_256": ranking_scores(
                    compress(model, threshold, 256).model.predict(m.feed), m.feed, m.test
                ).ndcg,
                "ckks_fast_server_s": cost.server_s,
                "bytes_up": cost.bytes_up,
                "bytes_down": cost.bytes_down,
                "key_bytes": cost.key_bytes,
                "top10_agreement": cost.top10_agreement,
            }
        )
        log(f"d = {d}: {rows[-1]}")
    return {
        "dataset": dataset,
        "chosen": {"dim": chosen.dim, "l2": chosen.l2, "valid_ndcg": chosen.ndcg},
        "dim_standard_errors": config.dim_standard_errors,
        "rows": rows,
        "validation": [c.to_dict() for c in frontier],
    }


def frontier_table(result: dict[str, Any]) -> str:
    """The frontier as text, the chosen rank marked."""
    chosen = result["chosen"]["dim"]
    body = [
        [
            f"{r['dim']}{' (chosen)' if r['dim'] == chosen else ''}",
            f"{r['valid_ndcg']:.4f}",
            f"{r['test_ndcg']:.4f}",
            f"{r['test_ndcg_256']:.4f}",
            f"{r['ckks_fast_server_s']:.3f}",
            f"{r['bytes_up'] / 1e6:.3f}",
            f"{r['bytes_down'] / 1e6:.3f}",
            f"{r['key_bytes'] / 1e6:.2f}",
        ]
        for r in result["rows"]
    ]
    header = ["d", "valid NDCG@10", "test NDCG@10", "(256 values)", "CKKS fast s"]
    return "\n".join(
        [
            f"Ranking model on {result['dataset']} (split seed 0): rank against quality and "
            f"encrypted cost; lambda {result['chosen']['l2']:.0f}",
            table([*header, "MB up", "MB down", "key MB"], body),
        ]
    )


def plot(result: dict[str, Any], path: Path) -> None:
    """NDCG@10 (validation, test) and CKKS fast server seconds against the rank, as PNG."""
    plt = pyplot()
    rows = result["rows"]
    dims = [r["dim"] for r in rows]
    fig, left = plt.subplots(figsize=(7, 4), dpi=120)
    left.plot(dims, [r["valid_ndcg"] for r in rows], "o-", label="validation NDCG@10")
    left.plot(dims, [r["test_ndcg"] for r in rows], "s--", label="test NDCG@10 (served)")
    left.set_xscale("log", base=2)
    left.set_xticks(dims, [str(d) for d in dims])
    left.set_xlabel("rank d")
    left.set_ylabel("NDCG@10 (higher is better)")
    right = left.twinx()
    right.plot(dims, [r["ckks_fast_server_s"] for r in rows], "^:", color="#c0392b")
    right.set_ylabel("CKKS fast server s per query", color="#c0392b")
    left.axvline(result["chosen"]["dim"], color="#7f8c8d", linewidth=0.8)
    left.legend(loc="lower right", fontsize=8)
    left.set_title(f"{result['dataset']}: the ranking model's rank, quality and cost")
    save_figure(fig, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queries", type=int, default=9, help="held-out users per rank for the CKKS timing"
    )


def main(args: argparse.Namespace) -> int:
    if args.download:
        download(args.dataset, args.data_dir, args.download_url)
    result = run(args.dataset, args.data_dir, args.queries)
    print(frontier_table(result))
    write_json(args.json, result)
    out = plot_path(args)
    if out:
        plot(result, out)
    return 0

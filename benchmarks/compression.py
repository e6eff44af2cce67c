"""`cryptorec bench compression`: the pruning threshold x cluster count sweep of one trained
model against pruning ratio, reuse ratio and fast-mode RMSE (sparse-quantization-reuse)."""

from __future__ import annotations

import argparse

from cryptorec.benchmarks.accuracy import run_sweep
from cryptorec.benchmarks.driver import Driver

DRIVER = Driver(
    "pruning threshold x cluster count against reuse ratio and RMSE",
    dataset="ml-1m",
    results="the rows",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[5e-4, 4e-3, 8e-3, 1.6e-2, 2.4e-2],
        help="pruning thresholds to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--clusters",
        type=int,
        nargs="+",
        default=[128, 256, 512],
        help="shared-value counts to measure (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    run_sweep(args.dataset, args.data_dir, tuple(args.thresholds), tuple(args.clusters), args.json)
    return 0

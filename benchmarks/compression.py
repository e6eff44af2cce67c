"""`cryptorec bench compression`: the pruning threshold x cluster count sweep of one trained
model against pruning ratio, reuse ratio and fast-mode RMSE (sparse-quantization-reuse)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptorec.benchmarks.accuracy import run_sweep
from cryptorec.services import settings

HELP = "pruning threshold x cluster count against reuse ratio and RMSE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    settings.add(parser, "data_dir")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[5e-4, 4e-3, 8e-3, 1.6e-2, 2.4e-2]
    )
    parser.add_argument("--clusters", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--json", type=Path, help="write the rows here")


def main(args: argparse.Namespace) -> int:
    run_sweep(args.dataset, args.data_dir, tuple(args.thresholds), tuple(args.clusters), args.json)
    return 0

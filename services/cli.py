"""The `cryptorec` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from libcryptorec.data import MOVIELENS_DATASETS, DatasetError

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cryptorec"


def default_data_dir() -> Path:
    """$CRYPTOREC_DATA, else a `shared/data` folder beside the checkout, else the user cache."""
    if "CRYPTOREC_DATA" in os.environ:
        return Path(os.environ["CRYPTOREC_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else DEFAULT_CACHE / "data"


def _bench_accuracy(args: argparse.Namespace) -> int:
    from libcryptorec.experiments import CompressionSetting
    from services.trainer.accuracy_report import run

    plot_out = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if args.download:
        from libcryptorec.download import download

        needed = [args.dataset] + ([] if args.no_transfer else ["ml-1m", "ml-latest-small"])
        for name in dict.fromkeys(needed):
            download(name, args.data_dir)
    run(
        dataset=args.dataset,
        data_dir=args.data_dir,
        repeats=args.repeats,
        json_out=args.json,
        plot_out=plot_out,
        transfer=not args.no_transfer,
        baselines=not args.no_baselines,
        compression=CompressionSetting(args.prune_threshold, args.clusters),
    )
    return 0


def _bench_compression(args: argparse.Namespace) -> int:
    from services.trainer.accuracy_report import run_sweep

    run_sweep(args.dataset, args.data_dir, tuple(args.thresholds), tuple(args.clusters), args.json)
    return 0


def _bench_he(args: argparse.Namespace) -> int:
    import json

    from services.trainer.he_report import run_he

    schemes = [args.scheme] if args.scheme else ["ckks", "bfv", "paillier"]
    modes = [args.mode] if args.mode else ["fast", "accurate1"]
    result = run_he(
        args.dataset,
        args.data_dir,
        args.model_cache,
        args.queries,
        schemes,
        modes,
        args.prune_threshold,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from libcryptorec.download import download

    for name in args.datasets:
        print(f"{name}: {download(name, args.data_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cryptorec", description="Privacy-preserving recommendation with CryptoRec."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    acc = bench.add_parser(
        "accuracy", help="paper Figure 2 / Table 2 / Table 4 under the paper's protocol"
    )
    acc.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    acc.add_argument("--data-dir", type=Path, default=default_data_dir())
    acc.add_argument("--repeats", type=int, default=5)
    acc.add_argument("--json", type=Path, help="write the results here")
    acc.add_argument(
        "--plot", type=Path, help="PNG of the accuracy table (default: JSON path .png)"
    )
    acc.add_argument("--prune-threshold", type=float, default=5e-4)
    acc.add_argument("--clusters", type=int, default=512)
    acc.add_argument(
        "--no-transfer", action="store_true", help="skip the ml-1m/ml-latest-small transfer"
    )
    acc.add_argument("--no-baselines", action="store_true", help="CryptoRec only")
    acc.add_argument(
        "--download", action="store_true", help="fetch missing datasets from GroupLens first"
    )
    acc.set_defaults(func=_bench_accuracy)

    comp = bench.add_parser(
        "compression", help="pruning threshold x cluster count against reuse ratio and RMSE"
    )
    comp.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    comp.add_argument("--data-dir", type=Path, default=default_data_dir())
    comp.add_argument(
        "--thresholds", type=float, nargs="+", default=[5e-4, 4e-3, 8e-3, 1.6e-2, 2.4e-2]
    )
    comp.add_argument("--clusters", type=int, nargs="+", default=[128, 256, 512])
    comp.add_argument("--json", type=Path, help="write the rows here")
    comp.set_defaults(func=_bench_compression)

    he = bench.add_parser("he", help="encrypted prediction: time, bytes and error per scheme")
    he.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    he.add_argument("--data-dir", type=Path, default=default_data_dir())
    he.add_argument("--model-cache", type=Path, default=DEFAULT_CACHE / "models")
    he.add_argument("--queries", type=int, default=5, help="held-out users to measure (>= 3)")
    he.add_argument("--scheme", choices=("ckks", "bfv", "paillier"), help="default: all")
    he.add_argument("--mode", choices=("fast", "accurate1"), help="default: both")
    he.add_argument(
        "--prune-threshold",
        type=float,
        default=0.016,
        help="pruning for the served model (0.016 prunes ~58%% of ml-1m's weights at no RMSE "
        "cost; see bench compression)",
    )
    he.add_argument("--json", type=Path)
    he.set_defaults(func=_bench_he)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data", required=True)
    dl = data.add_parser("download", help="fetch and verify official GroupLens archives")
    dl.add_argument("datasets", nargs="+", choices=MOVIELENS_DATASETS)
    dl.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE / "data")
    dl.set_defaults(func=_data_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `cryptorec` command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (DatasetError, FileNotFoundError) as exc:
        print(f"cryptorec: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

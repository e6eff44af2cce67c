"""The `cryptorec` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from libcryptorec.data import MOVIELENS_DATASETS, DatasetError
from services.store.base import StoreError

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


def _serve(args: argparse.Namespace) -> int:
    import logging

    from services.rpc.server import ROLES, serve_forever, start
    from services.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from services.rpc.tls import ServerTls

    roles = ROLES if args.role == "all" else (args.role,)
    store = open_store(args.store, os.environ.get("CRYPTOREC_STORE_PREFIX", "cryptorec:"))
    tls = ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    running = start(roles, store, args.port, args.host, tls, args.health_port if tls else None)
    serve_forever(running)
    return 0


def _train(args: argparse.Namespace) -> int:
    from libcryptorec.data import load_movielens, read_csv
    from services.store import open_store
    from services.trainer.publish import train_and_publish

    if args.download and not args.csv:
        from libcryptorec.download import download

        download(args.dataset, args.data_dir)
    ratings = read_csv(args.csv) if args.csv else load_movielens(args.dataset, args.data_dir)
    train_and_publish(
        ratings,
        open_store(args.store),
        prune_fraction=args.prune_fraction,
        version=args.version,
        show_progress=True,
    )
    return 0


def _recommend(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from services.client.library import CryptoRecClient

    ratings = {int(i): float(r) for i, r in _item_ratings(args.ratings)}
    from services.rpc.tls import ClientTls

    client = CryptoRecClient(
        args.target,
        key_target=args.key_target,
        evaluator_target=args.evaluator_target,
        key_dir=args.key_dir,
        tls=ClientTls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None,
    )
    try:
        result = client.recommend(ratings, scheme=args.scheme, mode=args.mode, top_n=args.top)
    finally:
        client.close()
    for rank, r in enumerate(result.recommendations, 1):
        print(f"{rank:>3}. {r.score:4.2f}  {r.title}")
    print("time: " + ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items()))
    print("bytes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in result.bytes.items()))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


def _item_ratings(path: Path) -> list[tuple[int, float]]:
    """Rows of `item,rating` (a header line is allowed)."""
    import csv

    out = []
    with path.open() as f:
        for row in csv.reader(f):
            if not row or not row[0].strip().isdigit():
                continue
            out.append((int(row[0]), float(row[1])))
    if not out:
        raise DatasetError(f"{path}: no item,rating rows")
    return out


def _demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    if args.download:
        from libcryptorec.download import download

        download(args.dataset, args.data_dir)
    run_demo(args.data_dir, args.dataset, args.redis, args.scheme, args.mode, args.top, args.json)
    return 0


def _bench_service(args: argparse.Namespace) -> int:
    from services.bench_service import run

    run(args.dataset, args.data_dir, args.model_cache, args.queries, args.concurrent, args.json)
    return 0


def _bench_load(args: argparse.Namespace) -> int:
    from services.bench_load import run

    plot = args.json.with_suffix(".png") if args.json else None
    run(args.dataset, args.data_dir, args.model_cache, args.requests, args.json, plot)
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from libcryptorec.download import download

    for name in args.datasets:
        print(f"{name}: {download(name, args.data_dir)}")
    return 0


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


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

    bs = bench.add_parser("service", help="gRPC latency and throughput vs the in-process engine")
    bs.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    bs.add_argument("--data-dir", type=Path, default=default_data_dir())
    bs.add_argument("--model-cache", type=Path, default=DEFAULT_CACHE / "models")
    bs.add_argument("--queries", type=int, default=9)
    bs.add_argument("--concurrent", type=int, default=2, help="clients per evaluator process")
    bs.add_argument("--json", type=Path)
    bs.set_defaults(func=_bench_service)

    bl = bench.add_parser(
        "load", help="throughput, latency, overload and memory, 1 and 2 processes"
    )
    bl.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    bl.add_argument("--data-dir", type=Path, default=default_data_dir())
    bl.add_argument("--model-cache", type=Path, default=DEFAULT_CACHE / "models")
    bl.add_argument("--requests", type=int, default=2000, help="per process count")
    bl.add_argument("--json", type=Path)
    bl.set_defaults(func=_bench_load)

    srv = sub.add_parser("serve", help="run services: key, model, evaluator or all")
    srv.add_argument("--role", choices=("key", "model", "evaluator", "all"), default="all")
    srv.add_argument("--port", type=int, default=50051)
    srv.add_argument("--host", default="0.0.0.0")
    srv.add_argument(
        "--store",
        default=os.environ.get("CRYPTOREC_STORE", "file://./store"),
        help="redis://HOST:PORT/DB or file://DIR (default $CRYPTOREC_STORE)",
    )
    srv.add_argument("--tls-cert", type=Path, default=_env_path("CRYPTOREC_TLS_CERT"))
    srv.add_argument("--tls-key", type=Path, default=_env_path("CRYPTOREC_TLS_KEY"))
    srv.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_env_path("CRYPTOREC_TLS_CLIENT_CA"),
        help="require client certificates signed by this CA (mutual TLS)",
    )
    srv.add_argument(
        "--health-port",
        type=int,
        default=50052,
        help="plaintext health-only port when TLS is on (kubelet gRPC probes speak plaintext)",
    )
    srv.set_defaults(func=_serve)

    tr = sub.add_parser("train", help="train, evaluate, compress and publish a model version")
    tr.add_argument("--dataset", choices=MOVIELENS_DATASETS, default="ml-1m")
    tr.add_argument("--data-dir", type=Path, default=default_data_dir())
    tr.add_argument("--csv", type=Path, help="train on a user,item,rating CSV instead")
    tr.add_argument("--download", action="store_true", help="fetch the dataset if missing")
    tr.add_argument("--store", default=os.environ.get("CRYPTOREC_STORE", "file://./store"))
    tr.add_argument("--version", help="version id (default: UTC time)")
    tr.add_argument("--prune-fraction", type=float, default=0.5, help="share of weights pruned")
    tr.set_defaults(func=_train)

    rec = sub.add_parser("recommend", help="encrypted recommendations for your ratings")
    rec.add_argument("--ratings", type=Path, required=True, help="CSV of item,rating rows")
    rec.add_argument(
        "--target", default="127.0.0.1:50051", help="model service (and default for all)"
    )
    rec.add_argument("--key-target")
    rec.add_argument("--evaluator-target")
    rec.add_argument("--scheme", choices=("ckks", "bfv", "paillier"), default="ckks")
    rec.add_argument("--mode", choices=("fast", "accurate"), default="fast")
    rec.add_argument("--top", type=int, default=10)
    rec.add_argument("--json", type=Path)
    rec.add_argument("--tls-ca", type=Path, help="CA of the services' certificates (enables TLS)")
    rec.add_argument("--tls-cert", type=Path, help="client certificate for mutual TLS")
    rec.add_argument("--tls-key", type=Path, help="client key for mutual TLS")
    rec.add_argument(
        "--key-dir",
        type=Path,
        default=DEFAULT_CACHE / "client-keys",
        help="where your keys (secret ones included, mode 0600) are kept between runs",
    )
    rec.set_defaults(func=_recommend)

    demo = sub.add_parser("demo", help="train, serve and recommend for a held-out user, locally")
    demo.add_argument("--dataset", choices=MOVIELENS_DATASETS, default="ml-100k")
    demo.add_argument("--data-dir", type=Path, default=default_data_dir())
    demo.add_argument("--download", action="store_true", help="fetch the dataset if missing")
    demo.add_argument("--redis", help="use this Redis (redis://...) instead of a local directory")
    demo.add_argument("--scheme", choices=("ckks", "bfv", "paillier"), default="ckks")
    demo.add_argument("--mode", choices=("fast", "accurate"), default="fast")
    demo.add_argument("--top", type=int, default=10)
    demo.add_argument("--json", type=Path)
    demo.set_defaults(func=_demo)

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
    except StoreError as exc:
        print(f"cryptorec: store unavailable: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

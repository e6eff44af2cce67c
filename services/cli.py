"""The `cryptorec` command: one entry point, one subcommand per job.

Settings (store, prefix, data folder, TLS, limits) come from services/settings.py, read the
same way by every subcommand. A failure a user can meet ends in one line on stderr saying what
happened and what to do, and exit code 2 (bad input) or 3 (something unavailable); a bug ends
in one line too, with the traceback only when CRYPTOREC_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from cryptorec.benchmarks import DRIVERS
from cryptorec.services import cli_args, settings
from cryptorec.services.app.server import ROLES
from cryptorec.services.cli_errors import CliError, explain
from cryptorec.services.store.base import Quotas
from libcryptorec.data import MOVIELENS_DATASETS
from libcryptorec.model import RANKING, STARS, ModelKind


def _open_store(args: argparse.Namespace) -> Any:
    from cryptorec.services.store import open_store

    return open_store(args.store, args.store_prefix)


def _fetch(args: argparse.Namespace, *names: str) -> None:
    """Download the named releases into --data-dir when --download is given."""
    if not getattr(args, "download", False):
        return
    from libcryptorec.download import download

    for name in dict.fromkeys(names):
        download(name, args.data_dir, args.download_url)


def _configure_logging(args: argparse.Namespace, service_name: str) -> None:
    from cryptorec.services.observability import logs, tracing

    logs.configure(args.log_format, args.log_level)
    try:
        tracing.configure(service_name)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None


def _serve(args: argparse.Namespace) -> int:
    from cryptorec.services.app.server import serve_forever, start
    from cryptorec.services.memory import limit_malloc_arenas
    from cryptorec.services.rpc.tls import ServerTls

    _configure_logging(args, f"cryptorec-{args.role}")
    limit_malloc_arenas()  # before any server thread: keeps memory within --cache-bytes
    roles = tuple(ROLES) if args.role == "all" else (args.role,)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together", 2)
    tls = ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    _check_free(args.host, args.port)
    if tls is not None:
        _check_free(args.host, args.health_port, "--health-port")
    if args.observe:
        _check_free(args.host, args.metrics_port, "--metrics-port")
    web = _web_config(args)
    if web is not None:
        _check_free(args.host, args.web_port, "--web-port")
    if args.shard_peers and not args.peer_secret:
        raise CliError(
            "--shard-peers needs --peer-secret (CRYPTOREC_PEER_SECRET): without it anyone "
            "could ask this evaluator for partial products, which decrypt to rows of the model",
            2,
        )
    config = server_config(args)
    store = _open_store(args)
    _check_store(store, args.wait_for_store)
    running = start(
        roles,
        store,
        args.port,
        args.host,
        tls,
        args.health_port if tls else None,
        config,
        web,
    )
    serve_forever(running)
    return 0


def server_config(args: argparse.Namespace) -> Any:
    """The ServerConfig of parsed `serve` arguments: every field named after a setting takes
    its value, and `options` holds every setting's (a backend's own among them)."""
    from cryptorec.services.app.server import ServerConfig
    from cryptorec.services.rpc.admission import Limits

    values = settings.values_for("serve", args)
    return settings.config_from(
        ServerConfig,
        values,
        limits=settings.config_from(Limits, values),
        peer_tls=_peer_tls(args),
        metrics_host=args.host,
        options=values,
    )


def _check_store(store: Any, wait: bool) -> None:
    """Find an unreachable store at start: exit 3 naming it, or (`wait`) serve not ready,
    with a warning, until it answers (the health watch logs its return)."""
    import logging

    from cryptorec.services.store.base import StoreError

    try:
        store.ping()
    except StoreError as exc:
        if not wait:
            raise CliError(
                f"store unavailable at start: {exc}; check --store (CRYPTOREC_STORE), or pass "
                "--wait-for-store to start not ready and wait for it",
                3,
            ) from None
        logging.getLogger("cryptorec.serve").warning(
            "store unavailable at start (%s): serving not ready until it answers", exc
        )


def _web_config(args: argparse.Namespace) -> Any:
    """The gRPC-web front's configuration (None without --web-port)."""
    from cryptorec.services.web.server import WebConfig, built_page

    if not args.web_port:
        return None
    if args.web_page is None:
        page = built_page()
    else:
        page = None if args.web_page.lower() == "none" else Path(args.web_page)
    origins = tuple(o.strip() for o in (args.web_origins or "").split(",") if o.strip())
    try:
        return WebConfig(
            args.web_port,
            args.host,
            page,
            origins,
            args.tls_cert,
            args.tls_key,
            args.tls_client_ca,
            connections_per_address=args.web_connections_per_address,
            header_timeout=args.web_header_timeout,
            drain_seconds=args.drain_seconds,
        )
    except ValueError as exc:
        raise CliError(str(exc), 2) from None


def _peer_tls(args: argparse.Namespace) -> Any:
    """How shard calls reach peers over TLS (None: plaintext)."""
    from cryptorec.services.evaluator.shards.peers import PeerTls
    from cryptorec.services.rpc.tls import ClientTls

    if not args.peer_tls_ca:
        return None
    return PeerTls(ClientTls(args.peer_tls_ca, args.tls_cert, args.tls_key), args.peer_tls_name)


def _check_free(host: str, port: int, flag: str = "--port") -> None:
    """CliError (exit 3) if host:port cannot be bound, before gRPC tries and logs its own."""
    import socket

    if port == 0:
        return
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise CliError(
            f"cannot listen on {host}:{port} ({exc.strerror}); stop what uses it or choose "
            f"another {flag}",
            3,
        ) from None


def _train(args: argparse.Namespace) -> int:
    from cryptorec.services.trainer.publish import train_and_publish
    from libcryptorec.data import load_movielens, read_csv

    _configure_logging(args, "cryptorec-trainer")
    if not args.csv:
        _fetch(args, args.dataset)
    # The data first (a missing folder must not leave a new store folder behind), then the
    # store: an unreachable one is found before an hour of training, not after.
    ratings = read_csv(args.csv) if args.csv else load_movielens(args.dataset, args.data_dir)
    store = _open_store(args)
    store.ping()
    # Both: the stars model first, so the ranking model is the current one.
    kinds: list[ModelKind] = [STARS, RANKING] if args.model == "both" else [args.model]
    if args.version and len(kinds) > 1:
        raise CliError("--version names one version; --model both publishes two", 2)
    for kind in kinds:
        train_and_publish(
            ratings,
            store,
            kind=kind,
            prune_fraction=args.prune_fraction,
            version=args.version,
            retain=args.retain,
            shards=args.shards,
            measure_cost=args.quote,
        )
    return 0


def _recommend(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from cryptorec.services.client.library import CryptoRecClient, recommendations_text

    ratings = dict(_item_ratings(args.ratings))
    client = CryptoRecClient(
        args.target,
        key_target=args.key_target,
        evaluator_target=args.evaluator_target,
        key_dir=args.key_dir,
        tls=_client_tls(args),
        token=args.token,
    )
    try:
        result = client.recommend(
            ratings, scheme=args.scheme, mode=args.mode, top_n=args.top, kind=args.model
        )
    finally:
        client.close()
    if result.quote:
        q = result.quote
        print(
            f"quoted: {q['bytes_up'] / 1e6:.2f} MB up, {q['bytes_down'] / 1e6:.2f} MB down, "
            f"{q['server_seconds']:.2f} s on the server"
        )
    print(recommendations_text(result))
    print("time: " + ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items()))
    print("bytes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in result.bytes.items()))
    print(f"request id: {result.request_id}")
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


def _item_ratings(path: Path) -> list[tuple[int, float]]:
    """Rows of `item,rating` (a header line is allowed); CliError names the first bad line."""
    import csv

    out = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.reader(f), 1):
            if not row or not row[0].strip() or (line == 1 and not row[0].strip().isdigit()):
                continue  # blank lines and a header
            try:
                out.append((int(row[0]), float(row[1])))
            except (ValueError, IndexError):
                raise CliError(f"{path}:{line}: expected item,rating, got {row!r}", 2) from None
    if not out:
        raise CliError(f"{path}: no item,rating rows", 2)
    return out


def _clients_add(args: argparse.Namespace) -> int:
    from cryptorec.services.credentials import add_client, key_allowance
    from cryptorec.services.errors import BadRequestError
    from cryptorec.services.store.base import Quotas

    _configure_logging(args, "cryptorec-clients")
    store = _open_store(args)
    key_bytes = args.max_key_bytes or key_allowance(store, args.model_reserve_bytes)
    quotas = Quotas(args.queries_per_day, args.max_key_sets, key_bytes)
    try:
        token = add_client(store, args.name, quotas, args.expires_in)
    except BadRequestError as exc:
        flag = "--" + (exc.field or "").replace("_", "-")
        raise CliError(f"{flag}: {exc}", 2) from None
    print(
        f"added client {args.name}: {quotas.queries_per_day} queries a day, "
        f"{quotas.max_key_sets} key sets ({quotas.max_key_bytes / 2**20:.0f} MiB), token "
        f"{_expiry(time.time() + args.expires_in if args.expires_in else None)}. "
        "Its token, shown once:",
        file=sys.stderr,
    )
    print(token)
    return 0


def _clients_rotate(args: argparse.Namespace) -> int:
    from cryptorec.services.credentials import rotate_client

    _configure_logging(args, "cryptorec-clients")
    token, record = rotate_client(_open_store(args), args.name, args.grace, args.expires_in)
    old = "stops now" if not args.grace else f"works {args.grace / 3600:g} h more"
    print(
        f"rotated {args.name}'s token: the old one {old}; the new one "
        f"{_expiry(record.expires_unix)}. The new token, shown once:",
        file=sys.stderr,
    )
    print(token)
    return 0


def _clients_list(args: argparse.Namespace) -> int:
    store = _open_store(args)
    for c in store.clients():
        used = store.usage(c.name)
        q = c.quotas
        added = time.strftime("%Y-%m-%d", time.gmtime(c.created_unix))
        print(
            f"{c.name:<20} queries {used.queries_today}/{q.queries_per_day} today  "
            f"key sets {used.key_sets}/{q.max_key_sets} ({used.key_bytes}/{q.max_key_bytes} "
            f"bytes)  added {added}, token {_expiry(c.expires_unix)}"
        )
    return 0


def _clients_revoke(args: argparse.Namespace) -> int:
    from cryptorec.services.credentials import revoke_client

    _configure_logging(args, "cryptorec-clients")
    revoke_client(_open_store(args), args.name)
    print(f"revoked {args.name}: its tokens no longer work, its key sets are gone", file=sys.stderr)
    return 0


def _client_tls(args: argparse.Namespace) -> Any:
    from cryptorec.services.rpc.tls import ClientTls

    return (
        ClientTls(args.tls_ca, args.client_tls_cert, args.client_tls_key) if args.tls_ca else None
    )


def _expiry(expires_unix: float | None) -> str:
    if expires_unix is None:
        return "does not expire"
    return time.strftime("expires %Y-%m-%d %H:%M UTC", time.gmtime(expires_unix))


def _usage(args: argparse.Namespace) -> int:
    from cryptorec.services.client.library import CryptoRecClient

    client = CryptoRecClient(args.target, token=args.token, tls=_client_tls(args))
    try:
        u = client.usage()
    finally:
        client.close()
    print(f"client {u.client}")
    print(f"queries today   {u.queries_today} of {u.queries_per_day} (a rolling 24 hours)")
    if u.next_query_unix:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(u.next_query_unix))
        print(f"next query at   {when}")
    print(f"key sets        {u.key_sets} of {u.max_key_sets}")
    print(f"key bytes       {u.key_bytes / 2**20:.1f} of {u.max_key_bytes / 2**20:.0f} MiB")
    print(f"token           {_expiry(u.token_expires_unix or None)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cryptorec.services.app.demo import run_demo
    from cryptorec.services.store.base import StoreError

    _demo_logging(args)
    _fetch(args, args.dataset)
    if args.model == RANKING and args.mode == "accurate":
        raise CliError("a ranking model has no accurate mode: use --model stars", 2)
    if args.web:
        _check_free("127.0.0.1", args.web_port, "--web-port")
    try:
        if args.web:
            _web_demo(args)
        else:
            run_demo(
                args.data_dir,
                args.dataset,
                args.redis,
                args.scheme,
                args.mode,
                args.top,
                args.json,
                kind=args.model,
            )
    except StoreError as exc:
        raise CliError(f"store unavailable: {exc}; check --redis", 3) from None
    if args.log_file != "-":
        print(f"\nThe services' log lines: {args.log_file}", file=sys.stderr)
    return 0


def _web_demo(args: argparse.Namespace) -> None:
    from cryptorec.services.app.demo import run_web_demo

    try:
        run_web_demo(args.data_dir, args.dataset, args.redis, args.web_port)
    except FileNotFoundError as exc:  # the page is not built
        raise CliError(str(exc), 3) from None


def _demo_logging(args: argparse.Namespace) -> None:
    """The demo tells its story on the terminal; the services' log lines (every call, every
    training step) go to --log-file unless it is "-"."""
    if args.log_file == "-":
        _configure_logging(args, "cryptorec-demo")
        return
    from cryptorec.services.observability import logs

    path = Path(args.log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    logs.configure(args.log_format, args.log_level, stream=path.open("a", encoding="utf-8"))


def _data_download(args: argparse.Namespace) -> int:
    from libcryptorec.download import download

    for name in args.datasets:
        print(f"{name}: {download(name, args.data_dir, args.download_url)}")
    return 0


def _choose_one(parser: argparse.ArgumentParser, dest: str) -> Any:
    """Subcommands of `parser` (stored in `dest`); naming none is a one-line error that lists
    them, not argparse's "the following arguments are required"."""
    group = parser.add_subparsers(dest=dest)

    def missing(args: argparse.Namespace) -> int:
        names = ", ".join(group.choices)
        raise CliError(f"`{parser.prog}` needs one of: {names} (see --help)", 2)

    parser.set_defaults(func=missing)
    return group


def _add_bench(sub: Any) -> None:
    bench = _choose_one(sub.add_parser("bench", help="benchmarks"), "bench")
    for name, module_name in DRIVERS.items():
        driver = importlib.import_module(module_name)
        p = bench.add_parser(name, help=driver.DRIVER.help, description=driver.__doc__)
        settings.add_for(p, f"bench {name}")
        driver.DRIVER.add_arguments(p)
        driver.add_arguments(p)
        p.set_defaults(func=driver.main)


def _add_serve(sub: Any) -> None:
    srv = sub.add_parser("serve", help="run services: key, model, evaluator or all")
    settings.add_for(srv, "serve")
    srv.set_defaults(func=_serve)


def _add_train(sub: Any) -> None:
    tr = sub.add_parser("train", help="train, evaluate, compress and publish a model version")
    cli_args.add_dataset(tr, "ml-1m")
    settings.add_for(tr, "train")
    tr.add_argument("--csv", type=Path, help="train on a user,item,rating CSV instead")
    cli_args.add_download(tr)
    cli_args.add_model_kind(
        tr,
        "ranking: a model trained for top-N lists; stars: the paper's model, which predicts "
        "star ratings; both: stars then ranking, so a deployment serves both and the ranking "
        "model is current",
        "both",
    )
    tr.add_argument("--version", help="version id (default: UTC time)")
    tr.add_argument("--prune-fraction", type=float, default=0.5, help="share of weights pruned")
    tr.add_argument(
        "--quote",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure each scheme's bytes and server seconds per query for clients to see",
    )
    tr.set_defaults(func=_train)


def _add_recommend(sub: Any) -> None:
    rec = sub.add_parser("recommend", help="encrypted recommendations for your ratings")
    rec.add_argument("--ratings", type=Path, required=True, help="CSV of item,rating rows")
    rec.add_argument("--key-target", help="the key service, if not at --target")
    rec.add_argument("--evaluator-target", help="the evaluator, if not at --target")
    cli_args.add_query(
        rec,
        "ranking: the newest model trained for top-N lists (its scores only order items); "
        "stars: the newest model that predicts star ratings",
        "the recommendations, timings and bytes",
    )
    settings.add_for(rec, "recommend")
    rec.add_argument(
        "--key-dir",
        type=Path,
        default=settings.CACHE_DIR / "client-keys",
        help="where your keys (secret ones included, mode 0600) are kept between runs",
    )
    rec.set_defaults(func=_recommend)


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="train, serve and recommend for a held-out user, locally")
    cli_args.add_dataset(demo, "ml-100k")
    settings.add_for(demo, "demo")
    cli_args.add_download(demo)
    demo.add_argument("--redis", help="use this Redis (redis://...) instead of a local directory")
    cli_args.add_query(
        demo,
        "the model to train and ask: ranking (seconds to train) or stars (the paper's, about "
        "a minute; needed for --mode accurate)",
        "the user, recommendations, timings and bytes",
    )
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the page instead: rate movies in your browser (keys stay in the browser)",
    )
    demo.add_argument("--web-port", type=int, default=8080, help="the page's port with --web")
    demo.add_argument(
        "--log-file",
        default=str(settings.CACHE_DIR / "demo.log"),
        help="where the services' log lines go ('-': the terminal) (default: %(default)s)",
    )
    demo.set_defaults(func=_demo)


def _add_clients(sub: Any) -> None:
    cl = sub.add_parser(
        "clients", help="who may ask (with serve --auth): add, rotate, list, revoke"
    )
    clients = _choose_one(cl, "clients")
    add = clients.add_parser("add", help="let a client in; prints its token once, last")
    add.add_argument("name", help="[a-z0-9-_.], at most 64 characters")
    defaults = Quotas()
    add.add_argument(
        "--queries-per-day",
        type=int,
        default=defaults.queries_per_day,
        help="answered queries it may ask in any 24 hours (default: %(default)s)",
    )
    add.add_argument(
        "--max-key-sets",
        type=int,
        default=defaults.max_key_sets,
        help="key sets it may hold at once (default: %(default)s)",
    )
    add.add_argument(
        "--max-key-bytes",
        type=settings.byte_size,
        help="key bytes it may hold (default: an eighth of what the store has for key sets "
        "after --model-reserve, at most 1G; 1G for an unbounded store)",
    )
    add.add_argument(
        "--expires-in", type=settings.duration, help="its token stops after this (90d, 12h)"
    )
    add.set_defaults(func=_clients_add)
    rot = clients.add_parser(
        "rotate", help="a new token for a client; the old one works for --grace more"
    )
    rot.add_argument("name", help="the client whose token is replaced")
    rot.add_argument(
        "--grace",
        type=settings.duration,
        default=86400.0,
        help="how long the old token keeps working (0: stops now; default 24h)",
    )
    rot.add_argument(
        "--expires-in", type=settings.duration, help="the new token stops after this (90d)"
    )
    rot.set_defaults(func=_clients_rotate)
    ls = clients.add_parser("list", help="clients with their quotas and what they use")
    ls.set_defaults(func=_clients_list)
    rv = clients.add_parser(
        "revoke", help="shut a client out (its tokens stop at once, its key sets go)"
    )
    rv.add_argument("name", help="the client to shut out")
    rv.set_defaults(func=_clients_revoke)
    for name, p in {"add": add, "rotate": rot, "list": ls, "revoke": rv}.items():
        settings.add_for(p, f"clients {name}")


def _add_usage(sub: Any) -> None:
    use = sub.add_parser("usage", help="your budget and quotas, as the service counts them")
    settings.add_for(use, "usage")
    use.set_defaults(func=_usage)


def _add_data(sub: Any) -> None:
    data = _choose_one(sub.add_parser("data", help="datasets"), "data")
    dl = data.add_parser("download", help="fetch and verify official GroupLens archives")
    dl.add_argument("datasets", nargs="+", choices=MOVIELENS_DATASETS, help="the releases to fetch")
    settings.add_for(dl, "data download")
    dl.set_defaults(func=_data_download)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cryptorec",
        description="Privacy-preserving recommendation with CryptoRec.",
        epilog="Exit codes: 0 done, 2 bad input, 3 something unavailable (network, store, "
        "service), 1 anything else. CRYPTOREC_DEBUG=1 shows tracebacks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_bench(sub)
    _add_serve(sub)
    _add_train(sub)
    _add_recommend(sub)
    _add_demo(sub)
    _add_clients(sub)
    _add_usage(sub)
    _add_data(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `cryptorec` command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        message, code = explain(exc)
        print(f"cryptorec: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

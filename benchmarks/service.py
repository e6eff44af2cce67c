"""`cryptorec bench service`: what the gRPC service adds to the engine, and how it scales.

For CKKS fast mode on the ml-1m model: the engine's in-process evaluation time, then the
evaluate phase through gRPC (stream up, compute, stream down, verify) with 1 and 2 evaluator
processes: sequential latency (medians) and throughput under concurrent clients; then what
authentication and budgets, and metrics and logs, each add to the evaluate phase (paired
processes with and without them, queries alternating between the two).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from cryptorec.benchmarks.driver import Driver
from cryptorec.benchmarks.models import item_ratings, load_or_train
from cryptorec.benchmarks.processes import free_port, start_evaluator, stop
from cryptorec.benchmarks.report import log, write_json
from cryptorec.services import versions
from cryptorec.services.app.server import ServerConfig, start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.credentials import add_client
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from libcryptorec.he import registry
from libcryptorec.splits import split_matrices

DRIVER = Driver(
    "gRPC latency and throughput vs the in-process engine, 1 and 2 evaluator processes",
    dataset="ml-1m",
)


def run(
    dataset: str, data_dir: Path, cache: Path, queries: int, concurrent: int, json_out: Path | None
) -> dict[str, Any]:
    packed, (ratings, split) = load_or_train(dataset, data_dir, cache, 0.016)
    feed = split_matrices(ratings, split).feed
    users = [item_ratings(ratings, feed, u) for u in range(queries)]

    # The engine alone, in this process.
    client, evaluator = registry.open_local(packed, "ckks", "fast")
    engine = []
    for u in range(queries):
        cts, _ = client.encrypt(feed[u])
        t0 = time.perf_counter()
        evaluator.evaluate(cts)
        engine.append(time.perf_counter() - t0)
    engine_s = float(np.median(engine))
    log(f"engine: {engine_s:.3f} s per query (median of {queries})")

    results: dict[str, Any] = {"engine_s": engine_s, "processes": {}}
    with tempfile.TemporaryDirectory(prefix="cryptorec-bench-") as tmp:
        store = FileStore(Path(tmp))
        catalogue = [(int(i), ratings.titles.get(int(i), "")) for i in ratings.item_ids]
        versions.publish(store, "bench", packed, catalogue)
        front = start(("model", "key"), store)
        for n in (1, 2):
            procs = [start_evaluator(Path(tmp)) for _ in range(n)]
            try:
                results["processes"][str(n)] = _measure(
                    front.port, [t for _, t in procs], users, concurrent * n, engine_s
                )
            finally:
                for proc, _ in procs:
                    stop(proc)
        front.stop(grace=1.0)
        results["auth"] = _auth_overhead(store, Path(tmp), users)
        results["observability"] = _observe_overhead(store, Path(tmp), users)
    one, two = results["processes"]["1"], results["processes"]["2"]
    results["scaling"] = two["throughput_rps"] / one["throughput_rps"]
    print(f"engine (in-process)       {engine_s * 1000:8.1f} ms per query")
    for n, r in results["processes"].items():
        print(
            f"{n} evaluator process(es): latency {r['latency_s'] * 1000:8.1f} ms "
            f"(overhead {100 * r['overhead']:+.1f}%), throughput {r['throughput_rps']:.2f}/s "
            f"with {r['concurrent']} concurrent clients"
        )
    print(f"throughput 2 vs 1 processes: {results['scaling']:.2f}x")
    for key, what in (
        ("auth", "authentication and budgets"),
        ("observability", "metrics and logs"),
    ):
        a = results[key]
        print(
            f"evaluate phase without / with {what}: {a['without_s'] * 1000:.1f} "
            f"/ {a['with_s'] * 1000:.1f} ms ({100 * a['overhead']:+.2f}%, {a['pairs']} pairs)"
        )
    write_json(json_out, results)
    return results


def _measure(
    front_port: int,
    evaluators: list[str],
    users: list[dict[int, float]],
    concurrent: int,
    engine_s: float,
) -> dict[str, Any]:
    clients = [
        CryptoRecClient(f"127.0.0.1:{front_port}", evaluator_target=t, timeout=300)
        for t in evaluators
    ]
    for c in clients[1:]:
        c.share_keys(clients[0])  # register once, use on every replica
    for c in clients:
        c.predict(users[0])  # warm-up: each replica loads and encodes the model once
    latencies = []
    for k, u in enumerate(users):
        _, result = clients[k % len(clients)].predict(u)
        latencies.append(result.timings["evaluate"])
    latency = float(np.median(latencies))
    done, lock, stop_at = [0], threading.Lock(), time.perf_counter() + 20.0

    def worker(i: int) -> None:
        c = clients[i % len(clients)]
        while time.perf_counter() < stop_at:
            c.predict(users[i % len(users)])
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrent)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    return {
        "latency_s": latency,
        "overhead": latency / engine_s - 1.0,
        "throughput_rps": done[0] / elapsed,
        "concurrent": concurrent,
        "requests": done[0],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queries", type=int, default=9, help="measured queries (default: %(default)s)"
    )
    parser.add_argument("--concurrent", type=int, default=2, help="clients per evaluator process")


def main(args: argparse.Namespace) -> int:
    run(args.dataset, args.data_dir, args.model_cache, args.queries, args.concurrent, args.json)
    return 0


def _auth_overhead(store: FileStore, folder: Path, users: list[dict[int, float]]) -> dict[str, Any]:
    """Authentication and budgets (token lookup, key ownership, the query budget): the
    evaluate phase on an evaluator without and one with `--auth`."""
    token = add_client(store, "bench", Quotas(queries_per_day=1_000_000))
    front = start(("model", "key"), store, config=ServerConfig(auth=True))
    try:
        return _paired(front.port, folder, users, ((), ("--auth",)), token)
    finally:
        front.stop(grace=1.0)


def _observe_overhead(
    store: FileStore, folder: Path, users: list[dict[int, float]]
) -> dict[str, Any]:
    """Metrics, the JSON access log (to a file) and the request id: the evaluate phase on an
    evaluator with `--no-observe` and one with them on."""
    front = start(("model", "key"), store)
    try:
        observed = ("--metrics-port", str(free_port()), "--log-format", "json")
        return _paired(front.port, folder, users, (("--no-observe",), observed), log=folder / "log")
    finally:
        front.stop(grace=1.0)


def _paired(
    front_port: int,
    folder: Path,
    users: list[dict[int, float]],
    flags: tuple[tuple[str, ...], tuple[str, ...]],
    token: str | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """The evaluate phase on two evaluator processes, started with `flags[0]` and `flags[1]`,
    the same queries alternating between them (and alternating which goes first, against
    drift): medians and the second's overhead over the first."""
    procs = [start_evaluator(folder, *f, log=log) for f in flags]
    clients = [
        CryptoRecClient(f"127.0.0.1:{front_port}", evaluator_target=t, token=token, timeout=300)
        for _, t in procs
    ]
    clients[1].share_keys(clients[0])  # one key set, used by both
    try:
        for c in clients:
            c.predict(users[0])  # warm-up: each loads and encodes the model once
        times: list[list[float]] = [[], []]
        for k in range(4 * len(users)):
            for which in (k % 2, 1 - k % 2):
                _, result = clients[which].predict(users[k % len(users)])
                times[which].append(result.timings["evaluate"])
    finally:
        for c in clients:
            c.close()
        for proc, _ in procs:
            stop(proc)
    without, with_ = (float(np.median(t)) for t in times)
    return {
        "without_s": without,
        "with_s": with_,
        "overhead": with_ / without - 1.0,
        "pairs": len(times[0]),
    }

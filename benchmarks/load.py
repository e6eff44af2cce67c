"""`cryptorec bench load`: drive 1 and 2 evaluator processes with concurrent clients.

For CKKS fast mode on the ml-1m model, per process count:
* sustained: closed loop, 2 clients per process, until `requests` answers: throughput,
  p50/p95/p99 latency, error rate, and the evaluators' resident memory sampled every 0.5 s;
* overload: open loop at twice the sustained rate for 20 s: what is refused
  (RESOURCE_EXHAUSTED) and how fast, and the latency of what is accepted.
Clients send a pre-encrypted query (the server cannot tell) so the client's own CPU stays out
of the measurement as far as two cores allow. Writes JSON and a PNG.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from cryptorec.benchmarks.driver import Driver, plot_path
from cryptorec.benchmarks.models import item_ratings, load_or_train
from cryptorec.benchmarks.processes import rss_mb, start_evaluator, stop
from cryptorec.benchmarks.report import log, pyplot, save_figure, table, write_json
from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.client.library import CryptoRecClient, model_kind, ratings_row
from cryptorec.services.store.file_store import FileStore
from libcryptorec.splits import split_matrices

DRIVER = Driver(
    "throughput, latency, overload and memory with 1 and 2 evaluator processes",
    dataset="ml-1m",
    plot="throughput, latency and memory",
)


class _Sampler(threading.Thread):
    """Resident memory of the evaluator processes (MB, summed) every 0.5 s."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.stop = pids, threading.Event()
        self.samples: list[tuple[float, float]] = []
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.samples.append((time.perf_counter() - self.t0, sum(rss_mb(p) for p in self.pids)))


def run(
    dataset: str,
    data_dir: Path,
    cache: Path,
    requests: int,
    json_out: Path | None,
    plot_out: Path | None,
) -> dict[str, Any]:
    packed, (ratings, split) = load_or_train(dataset, data_dir, cache, 0.016)
    user = item_ratings(ratings, split_matrices(ratings, split).feed, 0)
    results: dict[str, Any] = {"processes": {}, "requests": requests}
    with tempfile.TemporaryDirectory(prefix="cryptorec-load-") as tmp:
        store = FileStore(Path(tmp))
        catalogue = [(int(i), ratings.titles.get(int(i), "")) for i in ratings.item_ids]
        versions.publish(store, "load", packed, catalogue)
        front = start(("model", "key"), store)
        try:
            for n in (1, 2):
                procs = [start_evaluator(Path(tmp)) for _ in range(n)]
                try:
                    targets = [t for _, t in procs]
                    results["processes"][str(n)] = _drive(
                        front.port, targets, [p.pid for p, _ in procs], user, requests
                    )
                finally:
                    for proc, _ in procs:
                        stop(proc)
        finally:
            front.stop(grace=1.0)
    one, two = results["processes"]["1"], results["processes"]["2"]
    results["scaling"] = two["throughput_rps"] / one["throughput_rps"]
    print(load_table(results))
    write_json(json_out, results)
    if plot_out:
        plot(results, plot_out)
    return results


def _drive(
    front_port: int, targets: list[str], pids: list[int], user: dict[int, float], requests: int
) -> dict[str, Any]:
    evaluator = "ipv4:" + ",".join(targets)
    client = CryptoRecClient(f"127.0.0.1:{front_port}", evaluator_target=evaluator, timeout=60)
    info = client.model_info()
    keys = client.ensure_keys(info, "ckks", "fast", {}, {})
    query, _ = keys.client.encrypt(ratings_row(info, user))

    def once() -> tuple[float, str]:
        t0 = time.perf_counter()
        try:
            client.evaluate(
                info.version,
                keys,
                "ckks",
                "fast",
                query,
                len(info.catalogue),
                info.inputs.input_offset,
                model_kind(info),
            )
            return time.perf_counter() - t0, "OK"
        except grpc.RpcError as exc:
            return time.perf_counter() - t0, exc.code().name

    for _ in range(2 * len(targets)):  # warm-up: every replica loads and encodes the model
        once()
    sampler = _Sampler(pids)
    sampler.start()
    rss_start = sum(rss_mb(p) for p in pids)
    outcomes: list[tuple[float, str]] = []
    lock = threading.Lock()
    clients = 2 * len(targets)

    def closed_loop() -> None:
        while True:
            with lock:
                if len(outcomes) >= requests:
                    return
            outcome = once()
            with lock:
                outcomes.append(outcome)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=closed_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    sampler.stop.set()
    ok = [lat for lat, code in outcomes if code == "OK"]
    throughput = len(ok) / elapsed
    log(f"{len(targets)} process(es): {throughput:.2f}/s over {len(outcomes)} requests")
    overload = _overload(once, 2 * throughput, seconds=20.0)
    client.close()
    rss = [mb for _, mb in sampler.samples] or [rss_start]
    return {
        "throughput_rps": throughput,
        "p50_ms": 1000 * float(np.percentile(ok, 50)),
        "p95_ms": 1000 * float(np.percentile(ok, 95)),
        "p99_ms": 1000 * float(np.percentile(ok, 99)),
        "error_rate": 1 - len(ok) / len(outcomes),
        "rss_mb_start": rss_start,
        "rss_mb_end": rss[-1],
        "rss_mb_max": max(rss),
        "requests": len(outcomes),
        "clients": clients,
        "rss_series": [[round(t, 1), round(mb, 1)] for t, mb in sampler.samples],
        "overload": overload,
    }


def _overload(once: Any, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop at `rate` requests/s for `seconds`: refusals must be fast, not queued."""
    outcomes: list[tuple[float, str]] = []
    with ThreadPoolExecutor(max_workers=64) as pool:
        futures, t0 = [], time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < seconds:
            due = t0 + k / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            futures.append(pool.submit(once))
            k += 1
        outcomes = [f.result() for f in futures]
    refused = [lat for lat, code in outcomes if code == "RESOURCE_EXHAUSTED"]
    ok = [lat for lat, code in outcomes if code == "OK"]
    return {
        "offered_rps": rate,
        "sent": len(outcomes),
        "answered": len(ok),
        "refused_resource_exhausted": len(refused),
        "other_errors": len(outcomes) - len(ok) - len(refused),
        "refusal_p99_ms": 1000 * float(np.percentile(refused, 99)) if refused else None,
        "answered_p99_ms": 1000 * float(np.percentile(ok, 99)) if ok else None,
    }


def load_table(results: dict[str, Any]) -> str:
    """Per process count: throughput, latency, errors, memory and what overload did."""
    rows = []
    for n, r in results["processes"].items():
        o = r["overload"]
        rows.append(
            [
                n,
                f"{r['throughput_rps']:.2f}",
                f"{r['p50_ms']:.0f}",
                f"{r['p95_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"{100 * r['error_rate']:.1f}%",
                f"{r['rss_mb_start']:.0f} -> {r['rss_mb_end']:.0f} ({r['rss_mb_max']:.0f})",
                f"{o['answered']} / {o['refused_resource_exhausted']}, "
                f"{o['refusal_p99_ms'] or 0:.0f} ms",
            ]
        )
    header = ["processes", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
    header += ["RSS MB start -> end (max)", "overload 2x: answered / refused, refusal p99"]
    return table(header, rows) + f"\nthroughput, 2 processes vs 1: {results['scaling']:.2f}x"


def plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    names = list(results["processes"])
    left.bar(
        [f"{n} proc" for n in names],
        [results["processes"][n]["throughput_rps"] for n in names],
        color="#c0392b",
    )
    left.set_ylabel("queries / s (CKKS fast, ml-1m)")
    left.set_title(f"throughput ({results['scaling']:.2f}x with 2 processes)")
    for n in names:
        series = np.array(results["processes"][n]["rss_series"] or [[0, 0]])
        right.plot(series[:, 0], series[:, 1], label=f"{n} process(es)")
    right.set_xlabel("seconds")
    right.set_ylabel("evaluators' resident memory, MB")
    right.set_title(f"memory over {results['requests']} requests")
    right.legend()
    save_figure(fig, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=2000, help="per process count")


def main(args: argparse.Namespace) -> int:
    run(args.dataset, args.data_dir, args.model_cache, args.requests, args.json, plot_path(args))
    return 0

"""`cryptorec bench service`: what the gRPC service adds to the engine, and how it scales.

For CKKS fast mode on the ml-1m model: the engine's in-process evaluation time, then the
evaluate phase through gRPC (stream up, compute, stream down, verify) with 1 and 2 evaluator
processes: sequential latency (medians) and throughput under concurrent clients.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from libcryptorec.he import schemes
from libcryptorec.protocol import split_matrices
from services import bundle
from services.client.library import CryptoRecClient
from services.rpc.health import wait_for
from services.rpc.server import start
from services.store.file_store import FileStore
from services.trainer.he_report import load_or_train


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _evaluator_process(store_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "serve",
            "--role",
            "evaluator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--store",
            f"file://{store_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"127.0.0.1:{port}"


def run(
    dataset: str, data_dir: Path, cache: Path, queries: int, concurrent: int, json_out: Path | None
) -> dict[str, Any]:
    packed, (ratings, split) = load_or_train(dataset, data_dir, cache, 0.016)
    feed = split_matrices(ratings, split).feed
    users = [
        {
            int(ratings.item_ids[i]): float(r)
            for i, r in zip(feed[u].indices, feed[u].data, strict=True)
        }
        for u in range(queries)
    ]
    spec = schemes.find_spec(schemes.specs(packed), "ckks", "fast")

    # The engine alone, in this process.
    prepared = schemes.prepare(packed, spec)
    inputs = schemes.ClientInputs.of(packed.model)
    client = schemes.new_client(spec, inputs)
    meta = {
        "scheme": "ckks",
        "mode": "fast",
        "parameter_set": spec.parameter_set,
        "rotation_steps": list(spec.rotation_steps),
    }
    evaluator = schemes.bind(prepared, meta, client.key_blobs())
    engine = []
    for u in range(queries):
        cts, _ = client.encrypt(feed[u])
        t0 = time.perf_counter()
        evaluator.evaluate(cts)
        engine.append(time.perf_counter() - t0)
    engine_s = float(np.median(engine))
    _log(f"engine: {engine_s:.3f} s per query (median of {queries})")

    results: dict[str, Any] = {"engine_s": engine_s, "processes": {}}
    with tempfile.TemporaryDirectory(prefix="cryptorec-bench-") as tmp:
        store = FileStore(Path(tmp))
        catalogue = [(int(i), ratings.titles.get(int(i), "")) for i in ratings.item_ids]
        bundle.publish(store, "bench", packed, catalogue)
        front = start(("model", "key"), store)
        for n in (1, 2):
            procs = [_evaluator_process(Path(tmp)) for _ in range(n)]
            try:
                results["processes"][str(n)] = _measure(
                    front.port, [t for _, t in procs], users, concurrent * n, engine_s
                )
            finally:
                for proc, _ in procs:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)
        front.stop(grace=1.0)
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
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _measure(
    front_port: int,
    evaluators: list[str],
    users: list[dict[int, float]],
    concurrent: int,
    engine_s: float,
) -> dict[str, Any]:
    _wait_ready(evaluators)
    clients = [
        CryptoRecClient(f"127.0.0.1:{front_port}", evaluator_target=t, timeout=300)
        for t in evaluators
    ]
    for c in clients[1:]:
        c._keys = clients[0]._keys  # register once, use on every replica
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


def _wait_ready(targets: list[str]) -> None:
    """Block until every evaluator process reports SERVING."""
    for target in targets:
        wait_for(target)

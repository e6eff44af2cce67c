"""An evaluator process's resident memory: at rest, with a model version encoded, and per
client key set it has bound, for every scheme and mode. The numbers the Kubernetes requests
and limits (k8s/README.md) are sized from.

    cryptorec bench memory [--keys 6] [--json benchmarks/results/evaluator-memory.json]

The model is synthetic with ml-1m's shape (3,706 items, d = 500), compressed like the served
one (half the weights pruned, 512 shared values): memory depends on the shape and the pruning,
not on the values. Each (scheme, mode) runs in a fresh `cryptorec serve --role evaluator`
process with a cache large enough to keep everything, and each key set comes from a new client.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from cryptorec.benchmarks.driver import Driver
from cryptorec.benchmarks.models import synthetic_packed
from cryptorec.benchmarks.processes import rss_mb, start_evaluator, stop
from cryptorec.benchmarks.report import log, table, write_json
from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.store.file_store import FileStore
from libcryptorec.he import registry

DRIVER = Driver("an evaluator process's resident memory per scheme and mode and per bound key set")

CASES = [("ckks", "fast"), ("bfv", "fast"), ("paillier", "fast"), ("ckks", "accurate")]


def measure(scheme: str, mode: str, keys: int, packed: Any, folder: Path) -> dict[str, Any]:
    """Resident memory of one evaluator process for (scheme, mode) as key sets are bound."""
    store = FileStore(folder / f"{scheme}-{mode}")
    catalogue = [(i + 1, f"item {i + 1}") for i in range(packed.model.n_items)]
    versions.publish(store, "v1", packed, catalogue)
    front = start(("model", "key"), store)
    proc, target = start_evaluator(store.root, "--cache-bytes", "16G")
    try:
        rest = rss_mb(proc.pid)
        ratings = {i + 1: float(1 + i % 5) for i in range(0, packed.model.n_items, 37)}
        series = []
        for k in range(keys):
            client = CryptoRecClient(
                f"127.0.0.1:{front.port}", evaluator_target=target, timeout=600
            )
            _, result = client.predict(ratings, scheme=scheme, mode=mode)
            client.close()
            series.append(rss_mb(proc.pid))
            log(f"{scheme}/{mode} key set {k + 1}: {series[-1]:.0f} MB")
        key_bytes = result.bytes.get("keys", 0)
    finally:
        stop(proc)
        front.stop(grace=1.0)
    backend = registry.get(scheme, mode)
    spec = backend.spec(packed)
    per_key = (series[-1] - series[0]) / max(1, keys - 1)
    return {
        "scheme": scheme,
        "mode": mode,
        "rest_mb": rest,
        "first_query_mb": series[0],
        "model_and_encoding_mb": series[0] - rest - per_key,
        "per_key_set_mb": per_key,
        "key_set_upload_mb": key_bytes / 1e6,
        "estimated_per_key_set_mb": backend.bound_bytes(spec, key_bytes) / 1e6,
        "series_mb": series,
    }


def memory_table(rows: list[dict[str, Any]]) -> str:
    """Per scheme and mode: memory at rest, of the model's encoding and per key set."""
    header = ["scheme/mode", "at rest", "model+encoding", "per key set", "(estimate)"]
    return table(
        [*header, "key upload"],
        [
            [
                f"{r['scheme']}/{r['mode']}",
                f"{r['rest_mb']:.0f} MB",
                f"{r['model_and_encoding_mb']:.0f} MB",
                f"{r['per_key_set_mb']:.1f} MB",
                f"{r['estimated_per_key_set_mb']:.1f} MB",
                f"{r['key_set_upload_mb']:.1f} MB",
            ]
            for r in rows
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=6, help="distinct key sets per scheme")


def main(args: argparse.Namespace) -> int:
    packed = synthetic_packed(3706)
    with tempfile.TemporaryDirectory(prefix="evaluator-memory-") as tmp:
        rows = [measure(s, m, args.keys, packed, Path(tmp)) for s, m in CASES]
    print(memory_table(rows))
    write_json(args.json, {"rows": rows})
    return 0

"""An evaluator process's resident memory: at rest, with a model version encoded, and per
client key set it has bound, for every scheme and mode. The numbers the Kubernetes requests
and limits (k8s/README.md) are sized from.

    .venv/bin/python -m benchmarks.evaluator_memory [--keys 6] [--json benchmarks/results/evaluator-memory.json]

The model is synthetic with ml-1m's shape (3,706 items, d = 500), compressed like the served
one (half the weights pruned, 512 shared values): memory depends on the shape and the pruning,
not on the values. Each (scheme, mode) runs in a fresh `cryptorec serve --role evaluator`
process with a cache large enough to keep everything, and each key set comes from a new client.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.he import schemes
from libcryptorec.model import CryptoRecModel
from services import bundle
from services.client.library import CryptoRecClient
from services.rpc.health import SERVING, wait_for
from services.rpc.server import start
from services.store.file_store import FileStore

CASES = [("ckks", "fast"), ("bfv", "fast"), ("paillier", "fast"), ("ckks", "accurate")]


def synthetic_model(items: int = 3706, dim: int = 500, seed: int = 0) -> CryptoRecModel:
    """Weights of the trained model's scale (|w| around 0.02), ml-1m's shape."""
    rng = np.random.default_rng(seed)
    model = CryptoRecModel(
        A=(rng.standard_normal((items, dim)) * 0.02).astype(np.float32),
        Q=(rng.standard_normal((items, dim)) * 0.02).astype(np.float32),
        item_means=rng.uniform(2.5, 4.5, items).astype(np.float32),
        global_mean=3.58,
        input_power=0.5,
    )
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    return model


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(scheme: str, mode: str, keys: int, packed: Any, folder: Path) -> dict[str, Any]:
    """Resident memory of one evaluator process for (scheme, mode) as key sets are bound."""
    store = FileStore(folder / f"{scheme}-{mode}")
    catalogue = [(i + 1, f"item {i + 1}") for i in range(packed.model.n_items)]
    bundle.publish(store, "v1", packed, catalogue)
    front = start(("model", "key"), store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "services.cli", "serve", "--role", "evaluator"),
            *("--host", "127.0.0.1", "--port", str(port), "--store", f"file://{store.root}"),
            *("--cache-bytes", "16G"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"127.0.0.1:{port}", SERVING, timeout=120)
        rest = _rss_mb(proc.pid)
        ratings = {i + 1: float(1 + i % 5) for i in range(0, packed.model.n_items, 37)}
        series = []
        for k in range(keys):
            client = CryptoRecClient(
                f"127.0.0.1:{front.port}", evaluator_target=f"127.0.0.1:{port}", timeout=600
            )
            _, result = client.predict(ratings, scheme=scheme, mode=mode)
            client.close()
            series.append(_rss_mb(proc.pid))
            print(f"{scheme}/{mode} key set {k + 1}: {series[-1]:.0f} MB", file=sys.stderr)
        key_bytes = result.bytes.get("keys", 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        front.stop(grace=1.0)
    spec = schemes.find_spec(schemes.specs(packed), scheme, mode)
    per_key = (series[-1] - series[0]) / max(1, keys - 1)
    return {
        "scheme": scheme,
        "mode": mode,
        "rest_mb": rest,
        "first_query_mb": series[0],
        "model_and_encoding_mb": series[0] - rest - per_key,
        "per_key_set_mb": per_key,
        "key_set_upload_mb": key_bytes / 1e6,
        "estimated_per_key_set_mb": schemes.bound_bytes(spec, key_bytes) / 1e6,
        "series_mb": series,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'scheme/mode':<16}{'at rest':>9}{'model+encoding':>16}{'per key set':>13}"
        f"{'(estimate)':>12}{'key upload':>12}"
    ]
    for r in rows:
        lines.append(
            f"{r['scheme'] + '/' + r['mode']:<16}{r['rest_mb']:>7.0f}MB"
            f"{r['model_and_encoding_mb']:>14.0f}MB{r['per_key_set_mb']:>11.1f}MB"
            f"{r['estimated_per_key_set_mb']:>10.1f}MB{r['key_set_upload_mb']:>10.1f}MB"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=6, help="distinct key sets per scheme")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = synthetic_model()
    packed = compress(model, threshold_for_fraction(model, 0.5), 512)
    with tempfile.TemporaryDirectory(prefix="evaluator-memory-") as tmp:
        rows = [measure(s, m, args.keys, packed, Path(tmp)) for s, m in CASES]
    print(table(rows))
    if args.json:
        command = "python -m benchmarks.evaluator_memory " + " ".join(sys.argv[1:])
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""`cryptorec bench catalogue`: CKKS fast mode as the catalogue grows, on 1 and 2 evaluator
processes computing item shards, through the real service.

Synthetic models (d = 500, weights on a 512-level codebook) of 4,096 to 131,072 items, and the
real multi-block catalogue we have (ml-latest-small, about 9,700 movies; skipped without the
data). For each: the version published unsharded and in 2 shards; 1 evaluator (every shard
here) and 2 evaluators that are each other's shard peers (the client asks the first); after a
warm-up query (each process encodes the shards it serves), the median over `--queries` of the
latency (the Predict stream until the last chunk is decrypted), the time to the first reply
chunk, bytes up and down, and the largest resident memory of an evaluator process (VmHWM); and
how far the sharded predictions of the same users are from the unsharded ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cryptorec.benchmarks.driver import Driver, plot_path
from cryptorec.benchmarks.processes import free_port, rss_mb, start_evaluator, stop
from cryptorec.benchmarks.report import log, pyplot, save_figure, table, write_json
from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.store.file_store import FileStore
from libcryptorec.compression import CompressedModel, CompressionStats, QuantizedMatrix
from libcryptorec.model import CryptoRecModel

DRIVER = Driver(
    "CKKS fast mode from 4,096 to 131,072 items, on 1 and 2 shard processes",
    plot="latency and memory per size",
)

SIZES = (4096, 16384, 65536, 131072)
DIM = 500
PROCESSES = (1, 2)


def codebook_packed(items: int, dim: int = DIM, seed: int = 0) -> CompressedModel:
    """A compressed model of `items` x `dim` weights drawn from a 512-level codebook (as the
    trainer's quantisation leaves them; k-means on 10^8 weights would take minutes)."""
    rng = np.random.default_rng(seed)
    levels = np.sort(rng.standard_normal(512)).astype(np.float32) * 0.02
    codebook = np.r_[np.float32(0.0), levels]

    def matrix() -> QuantizedMatrix:
        indices = rng.integers(1, len(codebook), (items, dim), dtype=np.uint16)
        return QuantizedMatrix(codebook=codebook, indices=indices)

    qa, qq = matrix(), matrix()
    model = CryptoRecModel(
        A=qa.dense(),
        Q=qq.dense(),
        item_means=rng.uniform(2.5, 4.0, items).astype(np.float32),
        global_mean=3.5,
        input_power=0.5,
    )
    stats = CompressionStats(0.0, 512, 0.0, 0.0, 0.0, 0.0, 0.0)  # nothing pruned or reused
    return CompressedModel(model=model, A=qa, Q=qq, stats=stats)


def _user(items: int, item_ids: list[int], seed: int) -> dict[int, float]:
    """A user with 96 ratings (the median ml-1m user rated 96 movies)."""
    rng = np.random.default_rng(seed)
    rated = rng.choice(items, min(items, 96), replace=False)
    return {item_ids[int(i)]: float(rng.integers(1, 6)) for i in rated}


def measure(
    name: str, packed: CompressedModel, catalogue: list[tuple[int, str]], queries: int
) -> list[dict[str, Any]]:
    """Rows for 1 and 2 evaluator processes on one catalogue."""
    rows = []
    items = packed.model.n_items
    ids = [i for i, _ in catalogue]
    with tempfile.TemporaryDirectory(prefix="cryptorec-catalogue-") as tmp:
        store = FileStore(Path(tmp))
        started = time.perf_counter()
        versions.publish(store, "whole", packed, catalogue, shards=1)
        blocks = -(-items // 4096)
        versions.publish(store, "sharded", packed, catalogue, shards=min(2, blocks))
        log(f"{name}: published in {time.perf_counter() - started:.0f} s")
        front = start(("model", "key"), store)
        predictions: list[list[np.ndarray]] = []
        try:
            for processes in PROCESSES:
                row, predicted = _run(
                    name, Path(tmp), front.port, processes, blocks, ids, items, queries
                )
                rows.append(row)
                predictions.append(predicted)
        finally:
            front.stop(grace=1.0)
    # The same users' predictions, unsharded in one process and sharded across two.
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*predictions, strict=True))
    rows[-1]["max_abs_diff_vs_one_process"] = diff
    log(f"{name}: sharded and unsharded predictions differ by at most {diff:.1e}")
    return rows


def _run(
    name: str,
    folder: Path,
    front_port: int,
    processes: int,
    blocks: int,
    ids: list[int],
    items: int,
    queries: int,
    cache_bytes: str = "16G",
) -> tuple[dict[str, Any], list[np.ndarray]]:
    ports = [free_port() for _ in range(processes)]
    peers = (
        *("--shard-peers", ",".join(f"127.0.0.1:{p}" for p in ports)),
        *("--peer-secret", "catalogue-benchmark-peers"),
    )
    extra = peers if processes > 1 else ()
    version = "sharded" if processes > 1 else "whole"
    # Room for every encoding this process serves: a 131,072-item model's is 4.3 GB, and a
    # cache smaller than one encoding rebuilds it for every query.
    extra = (*extra, "--cache-bytes", cache_bytes)
    procs = [start_evaluator(folder, *extra, port=p) for p in ports]
    client = CryptoRecClient(f"127.0.0.1:{front_port}", evaluator_target=procs[0][1], timeout=1800)
    try:
        started = time.perf_counter()
        client.predict(_user(items, ids, 0), version=version)  # warm-up: encode the shards
        warm = time.perf_counter() - started
        users = [_user(items, ids, q + 1) for q in range(queries)]
        answers = [client.predict(user, version=version) for user in users]
        results = [result for _, result in answers]
        peak = max(rss_mb(p.pid, "VmHWM") for p, _ in procs)
    finally:
        client.close()
        for proc, _ in procs:
            stop(proc)
    latency = [r.timings["evaluate"] + r.timings["decrypt"] for r in results]
    first = [r.timings["first_reply"] for r in results]
    row = {
        "catalogue": name,
        "items": items,
        "shards": min(processes, blocks),
        "processes": processes,
        "latency_s": float(np.median(latency)),
        "first_chunk_s": float(np.median(first)),
        "bytes_up": int(results[-1].bytes["up"]),
        "bytes_down": int(results[-1].bytes["down"]),
        "rss_mb_max": round(peak, 1),
        "warm_up_s": round(warm, 2),
    }
    log(
        f"{name}, {processes} process(es): latency {row['latency_s']:.3f} s, first chunk "
        f"{row['first_chunk_s']:.3f} s, peak {peak:.0f} MB (warm-up {warm:.0f} s)"
    )
    return row, [predicted for predicted, _ in answers]


def _ml_latest_small(data_dir: Path) -> tuple[CompressedModel, list[tuple[int, str]]] | None:
    """A quickly trained model on ml-latest-small and its catalogue (None without the data)."""
    from cryptorec.services.trainer.publish import small_config
    from libcryptorec.compression import compress
    from libcryptorec.data import DatasetError, load_movielens
    from libcryptorec.training import train

    try:
        ratings = load_movielens("ml-latest-small", data_dir)
    except DatasetError as exc:
        log(f"ml-latest-small skipped: {exc}")
        return None
    model = train(ratings.to_csr(), small_config(), scale=ratings.scale).model
    catalogue = [(int(i), ratings.titles.get(int(i), "")) for i in ratings.item_ids]
    return compress(model, 0.0005, 512), catalogue


def run(
    sizes: tuple[int, ...], data_dir: Path, queries: int, json_out: Path | None, plot: Path | None
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for items in sizes:
        catalogue = [(i + 1, f"item {i + 1}") for i in range(items)]
        rows += measure(f"synthetic-{items}", codebook_packed(items), catalogue, queries)
    real = _ml_latest_small(data_dir)
    if real is not None:
        rows += measure("ml-latest-small", real[0], real[1], queries)
    print(
        table(
            [
                "catalogue",
                "items",
                "procs",
                "shards",
                "latency s",
                "1st chunk s",
                "up MB",
                "down MB",
                "peak MB",
            ],
            [
                [
                    r["catalogue"],
                    f"{r['items']:,}",
                    str(r["processes"]),
                    str(r["shards"]),
                    f"{r['latency_s']:.3f}",
                    f"{r['first_chunk_s']:.3f}",
                    f"{r['bytes_up'] / 1e6:.2f}",
                    f"{r['bytes_down'] / 1e6:.2f}",
                    f"{r['rss_mb_max']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    payload = {"rows": rows, "per_item": per_item_costs(rows)}
    write_json(json_out, payload)
    if plot is not None:
        _plot(rows, plot)
    return payload


def per_item_costs(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares slopes over the synthetic catalogues on one process: seconds, bytes up
    and down, and resident megabytes per item; and what a 1,000,000-item catalogue needs."""
    one = [r for r in rows if r["processes"] == 1 and r["catalogue"].startswith("synthetic")]
    if len(one) < 2:
        return {}
    x = np.array([r["items"] for r in one], dtype=float)

    def slope(key: str) -> tuple[float, float]:
        a, b = np.polyfit(x, np.array([r[key] for r in one], dtype=float), 1)
        return float(a), float(b)

    seconds, bytes_up, bytes_down, memory = (
        slope(k) for k in ("latency_s", "bytes_up", "bytes_down", "rss_mb_max")
    )
    million = 1_000_000
    return {
        "seconds_per_item": seconds[0],
        "bytes_up_per_item": bytes_up[0],
        "bytes_down_per_item": bytes_down[0],
        "resident_mb_per_item": memory[0],
        "million_items_seconds_one_process": seconds[0] * million + seconds[1],
        "million_items_bytes_up": bytes_up[0] * million,
        "million_items_bytes_down": bytes_down[0] * million,
        "million_items_resident_mb": memory[0] * million + memory[1],
    }


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    synthetic = [r for r in rows if r["catalogue"].startswith("synthetic")]
    for processes, style in ((1, "o-"), (2, "s--")):
        mine = [r for r in synthetic if r["processes"] == processes]
        items = [r["items"] for r in mine]
        left.plot(items, [r["latency_s"] for r in mine], style, label=f"{processes} proc latency")
        left.plot(
            items,
            [r["first_chunk_s"] for r in mine],
            style,
            alpha=0.5,
            label=f"{processes} proc first chunk",
        )
        right.plot(items, [r["rss_mb_max"] for r in mine], style, label=f"{processes} proc")
    for axis, ylabel in ((left, "seconds"), (right, "peak resident MB per process")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("catalogue items (d = 500)")
        axis.set_ylabel(ylabel)
        axis.legend()
        axis.grid(alpha=0.3)
    fig.suptitle("CKKS fast mode by item shards (2-core machine)")
    save_figure(fig, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(SIZES), help="synthetic catalogue sizes"
    )
    parser.add_argument("--queries", type=int, default=3, help="measured queries per setting")


def main(args: argparse.Namespace) -> int:
    run(tuple(args.sizes), args.data_dir, args.queries, args.json, plot_path(args))
    return 0

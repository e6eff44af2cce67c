"""The paper's reuse method as written against the bucket method, for Paillier's first product
x A on the ml-1m model (d = 500, 512 shared values, 58% pruned), in one process.

    cryptorec bench paillier-methods [--columns 50] [--rows 371]

Both kernels run on a slice (columns for the bucket method, rows for the paper's) and the time
is scaled to the whole product; both give identical ciphertexts' plaintexts (tests check that).
"""

from __future__ import annotations

import argparse
import time

import gmpy2
import numpy as np

from cryptorec.benchmarks.driver import Driver
from cryptorec.benchmarks.models import load_or_train
from libcryptorec.he.paillier import (
    PaillierClient,
    PaillierModel,
    bucket_columns,
    paper_rows,
)

DRIVER = Driver(
    "Paillier's first product: the paper's per-row reuse against the bucket method", results=None
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--columns", type=int, default=50, help="columns the bucket method runs")
    parser.add_argument("--rows", type=int, default=371, help="rows the paper's method runs")


def main(args: argparse.Namespace) -> int:
    packed, _ = load_or_train("ml-1m", args.data_dir, args.model_cache, 0.016)
    model = PaillierModel.encode(packed)
    client = PaillierClient(2048)
    x = np.random.default_rng(0).normal(0, 0.1, model.items)
    cts = [gmpy2.mpz(int.from_bytes(b, "big")) for b in client.encrypt(x)]
    t0 = time.perf_counter()
    bucket_columns(cts, model.A_groups, range(args.columns), client.n2)
    bucket = (time.perf_counter() - t0) * model.dim / args.columns
    t0 = time.perf_counter()
    paper_rows(cts, model.A_row_groups, range(args.rows), model.dim, client.n2)
    paper = (time.perf_counter() - t0) * model.items / args.rows
    print(
        f"x A, one process: bucket {bucket:.1f} s, paper's per-row reuse {paper:.1f} s "
        f"({paper / bucket:.1f}x slower)"
    )
    return 0

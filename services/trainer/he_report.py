"""`cryptorec bench he`: encrypted prediction on the ml-1m model beside the paper's Table 6."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from libcryptorec import artifact
from libcryptorec.compression import CompressedModel, compress
from libcryptorec.data import load_movielens
from libcryptorec.he.benchmark import measure_ckks_fast
from libcryptorec.protocol import paper_split
from libcryptorec.training import train

# Paper Table 6 (ml1m): fast mode with Paillier on 8 cores; accurate mode with BFV.
PAPER_TABLE_6 = {
    "fast": {"server_s": 10.9, "client_s": 5.8, "bytes": 3.86e6},
    "accurate1": {"server_s": 7.8 * 3600, "client_s": 11.8, "bytes": 1.08e9},
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_or_train(dataset: str, data_dir: Path, cache: Path) -> tuple[CompressedModel, Any]:
    """The compressed model trained on split seed 0's training users (cached), and the split."""
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, 0)
    path = cache / f"{dataset}-seed0-512.crmodel"
    if path.is_file():
        loaded = artifact.load(path)
        if isinstance(loaded, CompressedModel):
            _log(f"loaded {path}")
            return loaded, (ratings, split)
    _log(f"training the {dataset} model (split seed 0) ...")
    packed = compress(train(ratings.to_csr(split.train)[split.train_users]).model)
    cache.mkdir(parents=True, exist_ok=True)
    artifact.save(packed, path)
    _log(f"saved {path}")
    return packed, (ratings, split)


def run_he(
    dataset: str, data_dir: Path, cache: Path, queries: int, scheme: str, mode: str
) -> dict[str, Any]:
    """Measure the requested scheme and mode; print a table beside the paper's; return JSON."""
    if queries < 3:
        raise ValueError("measure at least 3 queries (medians)")
    packed, (ratings, split) = load_or_train(dataset, data_dir, cache)
    feed = ratings.to_csr(split.feed)[split.new_users]
    test = ratings.to_csr(split.test)[split.new_users]
    model = packed.model
    _log(f"model: {model.n_items} items (the rated ones), d = {model.dim}, 512 shared values")
    results: dict[str, Any] = {}
    if scheme == "ckks" and mode == "fast":
        m = measure_ckks_fast(model, feed, test, users=queries, log=_log)
        results = {"ckks": {"fast": m.to_dict()}}
    paper = PAPER_TABLE_6["fast"]
    print(
        f"{'scheme/mode':<14}{'client enc s':>13}{'server s':>10}{'client dec s':>13}"
        f"{'MB up+down':>11}{'key MB':>8}{'max err':>10}{'RMSE':>8}"
    )
    for sch, modes in results.items():
        for md, r in modes.items():
            print(
                f"{sch + '/' + md:<14}{r['client_encrypt_s']:>13.4f}{r['server_s']:>10.3f}"
                f"{r['client_decrypt_s']:>13.4f}{(r['bytes_up'] + r['bytes_down']) / 1e6:>11.3f}"
                f"{r['key_bytes'] / 1e6:>8.2f}{r['max_abs_err']:>10.1e}{r['rmse']:>8.4f}"
            )
    print(
        f"{'paper fast':<14}{paper['client_s']:>13.1f}{paper['server_s']:>10.1f}{'':>13}"
        f"{paper['bytes'] / 1e6:>11.2f}   (Paillier, 8 cores)"
    )
    return results

"""`cryptorec bench he`: encrypted prediction on the ml-1m model beside the paper's Table 6."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from libcryptorec import __version__, artifact
from libcryptorec.compression import CompressedModel, compress
from libcryptorec.data import load_movielens
from libcryptorec.he import schemes as he_schemes
from libcryptorec.he.benchmark import measure
from libcryptorec.model import CryptoRecModel
from libcryptorec.protocol import paper_split, split_matrices
from libcryptorec.training import train

# Paper Table 6 (ml1m): fast mode with Paillier on 8 cores; accurate mode with BFV.
PAPER_TABLE_6 = {
    "fast": {"server_s": 10.9, "client_s": 5.8, "bytes": 3.86e6},
    "accurate1": {"server_s": 7.8 * 3600, "client_s": 11.8, "bytes": 1.08e9},
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_or_train(
    dataset: str, data_dir: Path, cache: Path, threshold: float
) -> tuple[CompressedModel, Any]:
    """The model trained on split seed 0's training users (cached), compressed at `threshold`
    with 512 shared values, and the split."""
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, 0)
    path = cache / f"{dataset}-seed0-v{__version__}.crmodel"
    dense = artifact.load(path) if path.is_file() else None
    if isinstance(dense, CryptoRecModel):
        _log(f"loaded {path}")
    else:
        _log(f"training the {dataset} model (split seed 0) ...")
        dense = train(split_matrices(ratings, split).train).model
        cache.mkdir(parents=True, exist_ok=True)
        artifact.save(dense, path)
        _log(f"saved {path}")
    return compress(dense, threshold, 512), (ratings, split)


def run_he(
    dataset: str,
    data_dir: Path,
    cache: Path,
    queries: int,
    schemes: list[str],
    modes: list[str],
    threshold: float,
) -> dict[str, Any]:
    """Measure each requested scheme and mode; print a table beside the paper's; return JSON
    shaped {SCHEME: {MODE: {...}}}."""
    if queries < 3:
        raise ValueError("measure at least 3 queries (medians)")
    packed, (ratings, split) = load_or_train(dataset, data_dir, cache, threshold)
    matrices = split_matrices(ratings, split)
    feed, test = matrices.feed, matrices.test
    _log(
        f"model: {packed.model.n_items} items (every rated id), d = {packed.model.dim}, "
        f"{packed.stats.clusters} shared values per matrix, pruned "
        f"{100 * packed.stats.pruning_ratio:.1f}% (threshold {threshold})"
    )
    results: dict[str, Any] = {}
    for scheme in schemes:
        for mode in modes:
            served = "accurate" if mode == "accurate1" else mode
            if (scheme, served) not in he_schemes.SUPPORTED:
                _log(f"{scheme}/{mode}: not implemented (accurate mode runs on CKKS)")
                continue
            m = measure(scheme, served, packed, feed, test, users=queries, log=_log)
            results.setdefault(scheme, {})[mode] = m.to_dict()
    print(table(results))
    return results


def table(results: dict[str, Any]) -> str:
    """The measurements beside the paper's Table 6 (ml1m)."""
    lines = [
        f"{'scheme/mode':<18}{'client enc s':>13}{'server s':>10}{'client dec s':>13}"
        f"{'MB up+down':>11}{'key MB':>8}{'max err':>10}{'RMSE':>8}"
    ]
    for scheme, modes in results.items():
        for mode, r in modes.items():
            lines.append(
                f"{scheme + '/' + mode:<18}{r['client_encrypt_s']:>13.4f}{r['server_s']:>10.3f}"
                f"{r['client_decrypt_s']:>13.4f}{(r['bytes_up'] + r['bytes_down']) / 1e6:>11.3f}"
                f"{r['key_bytes'] / 1e6:>8.2f}{r['max_abs_err']:>10.1e}{r['rmse']:>8.4f}"
            )
    for mode, p in PAPER_TABLE_6.items():
        lines.append(
            f"{'paper/' + mode:<18}{p['client_s']:>13.1f}{p['server_s']:>10.1f}{'':>13}"
            f"{p['bytes'] / 1e6:>11.2f}   (" + ("Paillier, 8 cores)" if mode == "fast" else "BFV)")
        )
    return "\n".join(lines)

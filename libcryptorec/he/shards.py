"""Item shards: a model's item blocks split into runs that different processes evaluate.

Fast mode's first product x A sums over item blocks, and its second product b + p Q^T is
computed block by block, so a shard (a run of blocks) computes its share of x A from its own
input blocks, the shares are added (`Backend.combine`), and each shard computes its own reply
blocks from the sum. Shards align with the scheme's blocks (n/2 slots for CKKS and BFV).
"""

from __future__ import annotations

# Blocks per shard by default: 16 blocks of 4,096 items is 65,536 items, about 2.2 GB of CKKS
# encodings, and the shard's part of a query (4.2 MB for CKKS, 8.4 MB for BFV) fits one
# message between evaluators.
DEFAULT_BLOCKS_PER_SHARD = 16
# The most one shard's part of a query may take: it travels as one message between
# evaluators (services/rpc/options.py allows 16 MiB).
MAX_SHARD_QUERY_BYTES = 14 << 20


def default_shards(blocks: int) -> int:
    """How many shards a model of `blocks` item blocks is split into unless told otherwise."""
    return max(1, -(-blocks // DEFAULT_BLOCKS_PER_SHARD))


def check_shards(blocks: int, shards: int, bytes_per_block: int) -> None:
    """ValueError unless `shards` can split `blocks` blocks with every shard's part of a
    query (`bytes_per_block` per block) under MAX_SHARD_QUERY_BYTES."""
    if not 1 <= shards <= blocks:
        raise ValueError(f"cannot split {blocks} item blocks into {shards} shards")
    largest = -(-blocks // shards)
    if largest * bytes_per_block > MAX_SHARD_QUERY_BYTES:
        fewest = -(-blocks // (MAX_SHARD_QUERY_BYTES // bytes_per_block))
        raise ValueError(
            f"{shards} shards leave {largest} blocks ({largest * bytes_per_block / 1e6:.1f} MB "
            f"of query) in one; use at least {fewest}"
        )


def shard_blocks(blocks: int, shards: int) -> list[range]:
    """`shards` runs of consecutive blocks covering range(blocks), as even as can be (the
    first ones one block longer). ValueError unless 1 <= shards <= blocks."""
    if not 1 <= shards <= blocks:
        raise ValueError(f"cannot split {blocks} item blocks into {shards} shards")
    size, extra = divmod(blocks, shards)
    out, start = [], 0
    for s in range(shards):
        stop = start + size + (1 if s < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def split_query(ciphertexts: list[bytes], runs: list[range]) -> list[list[bytes]]:
    """Each shard's input blocks of a query of one ciphertext per block."""
    if runs and runs[-1].stop != len(ciphertexts):
        raise ValueError(f"{len(ciphertexts)} ciphertexts for {runs[-1].stop} blocks")
    return [ciphertexts[r.start : r.stop] for r in runs]

"""Arguments several commands share (not settings: they vary per run, not per deployment),
each added one way, with its help and default shown."""

from __future__ import annotations

import argparse
from pathlib import Path

from libcryptorec.data import MOVIELENS_DATASETS
from libcryptorec.he import registry


def add_dataset(
    parser: argparse.ArgumentParser,
    default: str,
    choices: tuple[str, ...] = tuple(MOVIELENS_DATASETS),
) -> None:
    """--dataset: which MovieLens release (from --data-dir)."""
    parser.add_argument(
        "--dataset",
        choices=choices,
        default=default,
        help="the MovieLens release to use (default: %(default)s)",
    )


def add_json(parser: argparse.ArgumentParser, what: str = "the results") -> None:
    """--json PATH: where to write `what` as JSON."""
    parser.add_argument("--json", type=Path, help=f"write {what} here, as JSON")


def add_backend(parser: argparse.ArgumentParser) -> None:
    """--scheme and --mode: the homomorphic backend a query uses."""
    parser.add_argument(
        "--scheme",
        choices=registry.scheme_names(),
        default="ckks",
        help="the encryption scheme (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        choices=registry.mode_names(),
        default="fast",
        help="fast: the model as published; accurate: fine-tuned on your ratings, encrypted "
        "(stars models only) (default: %(default)s)",
    )


def add_top(parser: argparse.ArgumentParser) -> None:
    """--top N: how many recommendations to show."""
    parser.add_argument(
        "--top", type=int, default=10, help="how many recommendations (default: %(default)s)"
    )

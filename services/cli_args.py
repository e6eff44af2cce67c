"""Arguments several commands share (not settings: they vary per run, not per deployment),
each added one way, with its help and default shown."""

from __future__ import annotations

import argparse
from pathlib import Path

from libcryptorec.data import MOVIELENS_DATASETS
from libcryptorec.he import registry
from libcryptorec.model import MODEL_KINDS, RANKING


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


def add_download(parser: argparse.ArgumentParser) -> None:
    """--download: fetch the MovieLens releases a run needs from GroupLens if missing."""
    parser.add_argument(
        "--download", action="store_true", help="fetch missing datasets from GroupLens first"
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


def add_model_kind(parser: argparse.ArgumentParser, meaning: str, *extra: str) -> None:
    """--model: which kind of model (ranking by default, or stars, or one of `extra`);
    `meaning` says what each choice means to this command."""
    parser.add_argument(
        "--model",
        choices=(*MODEL_KINDS, *extra),
        default=RANKING,
        help=f"{meaning} (default: %(default)s)",
    )


def add_top(parser: argparse.ArgumentParser) -> None:
    """--top N: how many recommendations to show."""
    parser.add_argument(
        "--top", type=int, default=10, help="how many recommendations (default: %(default)s)"
    )


def add_query(parser: argparse.ArgumentParser, model_meaning: str, results: str) -> None:
    """The arguments of a command that asks for recommendations: --scheme and --mode,
    --model (`model_meaning` says what each kind means to it), --top, and --json for
    `results`."""
    add_backend(parser)
    add_model_kind(parser, model_meaning)
    add_top(parser)
    add_json(parser, results)

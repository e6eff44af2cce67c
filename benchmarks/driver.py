"""What a benchmark driver declares about itself, and the arguments `cryptorec bench` gives
every driver from that declaration (one way to ask for a dataset, a JSON file or a plot)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cryptorec.services import cli_args

# The releases with explicit ratings and the paper's protocol that the drivers run on.
BENCH_DATASETS = ("ml-100k", "ml-1m")


@dataclass(frozen=True)
class Driver:
    """A benchmark as `cryptorec bench` shows it: `help` (one line); `--dataset` (default
    `dataset`) when it reads MovieLens, and `--download` when it can fetch what it reads;
    `--json` when it writes `results` as JSON; `--plot` (default: the --json path with .png)
    when it draws `plot`."""

    help: str
    dataset: str | None = None
    download: bool = False
    results: str | None = "the results"
    plot: str | None = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The arguments this declaration asks for, before the driver's own."""
        if self.dataset is not None:
            cli_args.add_dataset(parser, self.dataset, BENCH_DATASETS)
        if self.download:
            cli_args.add_download(parser)
        if self.results is not None:
            cli_args.add_json(parser, self.results)
        if self.plot is not None:
            parser.add_argument(
                "--plot", type=Path, help=f"PNG of {self.plot} (default: the --json path, .png)"
            )


def plot_path(args: argparse.Namespace) -> Path | None:
    """Where a driver draws its figure: --plot, else beside --json with .png, else nowhere."""
    if args.plot is not None:
        return Path(args.plot)
    return Path(args.json).with_suffix(".png") if args.json is not None else None

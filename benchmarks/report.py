"""What every benchmark driver shares: progress lines, JSON that records its command, plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    """A progress line on stderr (tables and results go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Rows of already-formatted cells under a header, columns sized to fit: the first column
    left-aligned, the others right-aligned (numbers)."""
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join(line(r) for r in [header, *rows])


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write `payload` (with the command that produced it) to `path`, if one is given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["cryptorec", *sys.argv[1:]]) if sys.argv else ""
    path.write_text(json.dumps({**payload, "command": command}, indent=2) + "\n")
    log(f"wrote {path}")


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend; a clear error without the plot extra."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "plots need matplotlib: pip install 'cryptorec[plot]' (or leave out the plot)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Save and close a figure."""
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)
    log(f"wrote {path}")

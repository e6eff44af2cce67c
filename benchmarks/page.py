"""`cryptorec bench page`: the page (web/) in headless Chromium, as a visitor meets it.

The demo's services (the ranking model trained on split seed 0's training users, every role,
the web port with the page), a fresh browser profile, one held-out user's first ratings typed
in through the search box: what the first request costs (loading SEAL's WebAssembly, key
generation, registration, encryption, evaluation, decryption), what the next one costs, and
the bytes on the wire as the browser's network log has them. Optionally a screenshot of the
page after the second request.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cryptorec.benchmarks.driver import Driver
from cryptorec.benchmarks.report import log, table, write_json
from cryptorec.services.app.server import ServerConfig, start
from cryptorec.services.credentials import add_client
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.trainer.publish import train_and_publish
from cryptorec.services.web.server import WebConfig, built_page
from libcryptorec.data import Ratings, load_movielens
from libcryptorec.splits import paper_split

DRIVER = Driver(
    "the page in headless Chromium: a visitor's first and next request", dataset="ml-100k"
)

# What Chromium needs here: no sandbox as root, and none of its calls home (this network
# refuses them, many at a time). The browser tests launch it the same way.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RATED = 10  # movies the visitor rates


def _visitor(ratings: Ratings, seed: int = 0) -> dict[int, float]:
    """The first RATED feeding ratings (movie id: whole stars) of the held-out user with the
    most feeding ratings of split `seed`."""
    split = paper_split(ratings, seed)
    counts = np.bincount(ratings.users[split.feed], minlength=ratings.n_users)
    user = int(split.new_users[np.argmax(counts[split.new_users])])
    mine = split.feed[ratings.users[split.feed] == user][:RATED]
    return {int(ratings.item_ids[ratings.items[k]]): float(round(ratings.values[k])) for k in mine}


def run(dataset: str, data_dir: Path, chromium: Path, screenshot: Path | None) -> dict[str, Any]:
    """Serve the demo's model and page, and measure two requests of one visitor."""
    from playwright.sync_api import sync_playwright

    page_dir = built_page()
    if page_dir is None:
        raise FileNotFoundError("the page is not built: cd web && npm ci && npm run build")
    ratings = load_movielens(dataset, data_dir)
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        store = FileStore(Path(tmp))
        split = paper_split(ratings, 0)
        log("training the ranking model ...")
        train_and_publish(ratings, store, rows=split.train_users)
        token = add_client(store, "page", Quotas(queries_per_day=1000))
        running = start(
            ("model", "key", "evaluator"),
            store,
            config=ServerConfig(auth=True),
            web=WebConfig(0, page_dir=page_dir),
        )
        assert running.web is not None
        started = time.monotonic()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1280, "height": 1100})
                page = context.new_page()
                requests: list[Any] = []
                page.on("request", lambda r: requests.append(r))
                page.goto(f"{running.web.url}#token={token}")
                page.wait_for_selector("body[data-ready=true]", timeout=120_000)
                titles = ratings.titles
                for item, stars in _visitor(ratings).items():
                    page.fill("#search", titles[item])
                    page.click(f"[data-testid=rate-{item}-{int(stars)}]")
                runs = [_recommend(page) for _ in range(2)]
                if screenshot is not None:
                    page.screenshot(path=str(screenshot), full_page=True)
                    log(f"wrote {screenshot}")
                wire = _wire(requests)
                browser.close()
        finally:
            running.stop(grace=1.0)
    log(f"measured in {time.monotonic() - started:.0f} s")
    return {"dataset": dataset, "first": runs[0], "next": runs[1], "wire": wire}


def _recommend(page: Any) -> dict[str, Any]:
    page.click("#recommend")
    page.wait_for_function(
        "['done', 'failed'].some(s => document.querySelector('#status').textContent.startsWith(s))",
        timeout=180_000,
    )
    status = page.text_content("#status")
    if not status.startswith("done"):
        raise RuntimeError(f"the page failed: {status}")
    costs: dict[str, Any] = page.evaluate("window.cryptorecLast.costs")
    return {"seconds": costs["seconds"], "bytes": costs["bytes"]}


def _wire(requests: list[Any]) -> dict[str, int]:
    """Bytes of the key registration and of each query, up and down, as sent."""

    def sizes(method: str) -> list[tuple[int, int]]:
        return [
            (len(r.post_data_buffer or b""), len(r.response().body()))
            for r in requests
            if r.url.endswith(method)
        ]

    (keys,) = sizes("RegisterKeysWhole")
    queries = sizes("PredictWhole")
    return {
        "keys_up": keys[0],
        "query_up": int(np.median([q[0] for q in queries])),
        "query_down": int(np.median([q[1] for q in queries])),
    }


def page_table(result: dict[str, Any]) -> str:
    phases = list(dict.fromkeys([*result["first"]["seconds"], *result["next"]["seconds"]]))
    rows = [
        [
            phase,
            f"{1000 * result['first']['seconds'].get(phase, 0):.0f}",
            f"{1000 * result['next']['seconds'].get(phase, 0):.0f}",
        ]
        for phase in phases
    ]
    w = result["wire"]
    return "\n".join(
        [
            f"The page on {result['dataset']} (headless Chromium): ms per phase",
            table(["phase", "first request", "next request"], rows),
            f"on the wire: keys {w['keys_up'] / 1e6:.2f} MB up once; per query "
            f"{w['query_up'] / 1e6:.3f} MB up, {w['query_down'] / 1e6:.3f} MB down",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chromium",
        type=Path,
        default=Path(os.environ.get("CRYPTOREC_CHROMIUM", "/usr/bin/chromium")),
        help="the Chromium to drive (Debian: apt-get install chromium)",
    )
    parser.add_argument("--screenshot", type=Path, help="PNG of the page after the requests")


def main(args: argparse.Namespace) -> int:
    result = run(args.dataset, args.data_dir, args.chromium, args.screenshot)
    print(page_table(result))
    write_json(args.json, result)
    return 0

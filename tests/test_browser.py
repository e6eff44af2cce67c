"""The page in a real headless browser (Debian's Chromium, driven by Playwright; no browser is
downloaded): someone rates movies and gets recommendations computed on ciphertexts, equal to
the Python client's for the same ratings; the secret key never appears in a request; keys
and ratings survive a reload and a forgotten key set is replaced. The page's uploads stay
within the sizes seeded keys and seeded encryption allow. What a person meets: labels that
say what numbers mean, a word when a search finds nothing, a sentence for each failure that
recovers without a reload, no serious axe-core violation, a phone-wide viewport."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cryptorec.benchmarks.page import CHROMIUM_ARGS
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.web.server import built_page
from tests.web_front import Served, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]

CHROMIUM = Path(os.environ.get("CRYPTOREC_CHROMIUM", "/usr/bin/chromium"))
RATINGS = {1: 5.0, 7: 4.0, 13: 2.0, 21: 5.0, 42: 3.0, 100: 1.0, 250: 4.5}
QUERY_BYTES_MAX = 0.27e6  # one fast-mode query, up and down
# Seeded keys carry one polynomial and a seed where Pyfhel's carry two polynomials: the page's
# key upload is about half the Python client's for the same model (0.505 measured).
SEEDED_KEY_SHARE = 0.55


def _require(ok: bool, why: str) -> None:
    if not ok:
        # CI installs Chromium and builds the page, so there a missing one is a failure.
        if os.environ.get("CRYPTOREC_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    page = built_page()
    _require(page is not None, "the page is not built (cd web && npm ci && npm run build)")
    s = serve(tmp_path_factory.mktemp("store"), page_dir=page)
    yield s
    s.running.stop(grace=1.0)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """The page in a fresh browser profile, with every request it sends recorded."""

    def __init__(self, browser: Any, served: Served, **context: Any) -> None:
        """`context`: Playwright's new_context options (a viewport, touch)."""
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.served = served

    def open(self, with_token: bool = True) -> None:
        fragment = f"#token={self.served.token}" if with_token else ""
        self.page.goto(self.served.url + fragment)
        self.page.wait_for_selector("body[data-ready=true]", timeout=60_000)

    def rate(self, ratings: dict[int, float]) -> None:
        """Rate each item as a person would, then wait until the page has kept the ratings."""
        for item, r in ratings.items():
            self.page.fill("#search", f"Item {item}")
            self.page.click(f"[data-testid=rate-{item}-{round(r)}]")
        self.page.wait_for_selector("body[data-saved=true]", state="attached")

    def recommend(self) -> dict[str, Any]:
        self.page.click("#recommend")
        self.page.wait_for_function(
            "document.querySelector('#status').textContent.startsWith('done')"
            " || document.querySelector('#status').className === 'error'",
            timeout=120_000,
        )
        status = self.page.text_content("#status")
        assert status.startswith("done"), (status, self.errors)
        last: dict[str, Any] = self.page.evaluate("window.cryptorecLast")
        return last

    def stored_keys(self) -> list[dict[str, Any]]:
        """The key records in the page's IndexedDB, bytes as lists of ints."""
        keys: list[dict[str, Any]] = self.page.evaluate(
            """() => new Promise((resolve, reject) => {
                const open = indexedDB.open("cryptorec");
                open.onerror = () => reject(open.error);
                open.onsuccess = () => {
                  const get = open.result.transaction("keys").objectStore("keys").getAll();
                  get.onsuccess = () => resolve(get.result.map(k => ({
                    keyId: k.keyId, purpose: k.purpose,
                    secretKey: Array.from(k.secretKey), publicKey: Array.from(k.publicKey),
                  })));
                };
              })"""
        )
        return keys

    def calls(self, method: str) -> list[Any]:
        return [r for r in self.requests if r.url.endswith(method)]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Page]:
    p = Page(browser, served)
    yield p
    p.close()


def _whole_ratings(ratings: dict[int, float]) -> dict[int, float]:
    """The page rates in whole stars."""
    return {item: float(round(r)) for item, r in ratings.items()}


def test_browser_recommendations_equal_the_python_clients(page: Page, served: Served) -> None:
    """The page ranks with the ranking model (RELIABILITY.md line 37): its scores equal the
    Python client's, its top 10 is theirs, and it says the scores are not stars."""
    page.open()
    assert "ranking model r1" in page.page.text_content("#model")
    page.rate(RATINGS)
    last = page.recommend()
    client = CryptoRecClient(served.grpc_target, token=served.token)
    try:
        expected, result = client.predict(_whole_ratings(RATINGS), kind="ranking")
    finally:
        client.close()
    assert result.model_version == "r1"
    ids = last["itemIds"]
    assert ids == list(range(1, 301))
    got = np.array(last["predictions"])
    assert np.max(np.abs(got - expected)) < 1e-3
    # The page's top 10: the best unrated items by ranking score (never clamped to stars).
    shown = [
        int(li)
        for li in page.page.eval_on_selector_all(
            "#recommendations li", "els => els.map(e => e.dataset.itemId)"
        )
    ]
    unrated = [i for i in np.argsort(-expected, kind="stable") if ids[i] not in RATINGS]
    assert len(shown) == 10
    assert np.allclose(expected[[ids.index(i) for i in shown]], expected[unrated[:10]], atol=1e-3)
    assert "not stars" in page.page.text_content("#scores-meaning")
    assert "★" not in page.page.text_content("#recommendations")

    # Seeded uploads: the key set and each query, measured on the wire.
    (register,) = page.calls("/cryptorec.v1.KeyService/RegisterKeysWhole")
    (predict,) = page.calls("/cryptorec.v1.EvaluatorService/PredictWhole")
    assert len(register.post_data_buffer) <= SEEDED_KEY_SHARE * result.bytes["keys"]
    reply = predict.response().body()
    assert len(predict.post_data_buffer) + len(reply) <= QUERY_BYTES_MAX
    assert page.errors == []


def test_browser_never_sends_the_secret_key_and_keys_survive_reload(page: Page) -> None:
    """RELIABILITY.md line 13 for the page: the network log, not the page's word for it."""
    page.open()
    page.rate({5: 4.0, 9: 2.0, 60: 5.0})
    first = page.recommend()
    (stored,) = page.stored_keys()
    secret = bytes(stored["secretKey"])
    assert len(secret) > 100_000  # the whole key: n coefficients on every limb
    # No request body holds the secret key, nor any 32-byte piece of its coefficients.
    coefficients = secret[16 + 32 + 24 :]
    pieces = [coefficients[k : k + 32] for k in range(0, len(coefficients) - 32, 4096)]
    bodies = [r.post_data_buffer or b"" for r in page.requests]
    assert page.calls("RegisterKeysWhole")
    assert page.calls("PredictWhole")
    for body in bodies:
        assert secret not in body
        assert not any(piece in body for piece in pieces)

    # A reload finds the same keys and asks the key service whether they are still registered
    # instead of registering again.
    page.requests.clear()
    page.page.reload()
    page.page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    assert page.page.text_content("[data-testid=key-id]") == first["keyId"]
    (again,) = page.stored_keys()
    assert bytes(again["secretKey"]) == secret
    assert again["keyId"] == first["keyId"]
    page.rate({5: 4.0, 9: 2.0, 60: 5.0})
    second = page.recommend()
    assert second["keyId"] == first["keyId"]
    assert page.calls("GetKeyInfo")
    assert not page.calls("RegisterKeysWhole")
    assert np.allclose(second["predictions"], first["predictions"], atol=1e-3)

    # Forgetting the keys makes the next request generate and register new ones.
    page.page.click("#forget")
    page.page.wait_for_function(
        "document.querySelector('[data-testid=key-id]').textContent === 'none yet'"
    )
    third = page.recommend()
    assert third["keyId"] != first["keyId"]
    assert len(page.calls("RegisterKeysWhole")) == 1
    assert page.errors == []


def test_browser_page_without_a_token_says_so(page: Page) -> None:
    page.page.goto(page.served.url)
    page.page.wait_for_function(
        "document.querySelector('#status').className === 'error'", timeout=60_000
    )
    assert "needs an access token" in page.page.text_content("#status")


def test_page_keeps_ratings_across_a_reload_and_clears_them(page: Page) -> None:
    """RELIABILITY.md line 45: ratings live with the keys (IndexedDB): a reload finds them,
    "Clear" forgets them."""
    page.open()
    page.rate({5: 4.0, 9: 2.0})
    assert "2 stars" in page.page.text_content("#rated")
    page.page.reload()
    page.page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    rated = page.page.text_content("#rated")
    assert "Item 5: 4 stars" in rated
    assert "Item 9: 2 stars" in rated
    assert page.page.is_enabled("#recommend")
    page.page.click("#clear-ratings")
    page.page.wait_for_function(
        "document.querySelector('#status').textContent === 'ratings cleared'"
    )
    assert page.page.text_content("#rated") == ""
    page.page.reload()
    page.page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    assert page.page.text_content("#rated") == ""
    assert not page.page.is_enabled("#recommend")


def test_page_says_what_its_numbers_mean(page: Page) -> None:
    """Rating buttons are stars (to the eye and to a screen reader); the model line and the
    results say the scores are ranking scores, not stars."""
    page.open()
    page.page.fill("#search", "Item 7")
    button = page.page.locator("[data-testid=rate-7-4]")
    assert button.text_content() == "4★"
    assert button.get_attribute("aria-label") == "4 stars"
    assert button.get_attribute("aria-pressed") == "false"
    group = page.page.locator("[data-testid=rate-7-4] >> xpath=..")
    assert "in stars" in (group.get_attribute("aria-label") or "")
    assert "not stars" in page.page.text_content("#model")
    button.click()
    assert page.page.locator("[data-testid=rate-7-4]").get_attribute("aria-pressed") == "true"
    page.recommend()
    scores = page.page.locator("#recommendations .score")
    assert (scores.first.get_attribute("aria-label") or "").startswith("ranking score")
    assert "not stars" in page.page.text_content("#scores-meaning")


def test_search_says_when_nothing_matches_or_nothing_is_loaded(page: Page) -> None:
    page.open()
    page.page.fill("#search", "zzzz no such film")
    assert "No title contains" in page.page.text_content("#search-note")
    # A catalogue that could not load: the search says so instead of finding nothing.
    page.page.route("**/GetModel", lambda route: route.abort())
    page.page.reload()
    page.page.wait_for_function("document.querySelector('#status').className === 'error'")
    page.page.fill("#search", "Item 1")
    assert "not loaded yet" in page.page.text_content("#search-note")


def _grpc_web_error(code: int, message: str, details: Any = None) -> dict[str, Any]:
    """A gRPC-web "trailers-only" failure, as the web front sends it."""
    import base64

    headers = {
        "content-type": "application/grpc-web+proto",
        "grpc-status": str(code),
        "grpc-message": message,
    }
    if details is not None:
        headers["grpc-status-details-bin"] = base64.b64encode(details.SerializeToString()).decode()
    return {"status": 200, "headers": headers, "body": b""}


def _status_says(page: Page, *words: str) -> str:
    page.page.wait_for_function(
        "document.querySelector('#status').className === 'error'", timeout=60_000
    )
    text = page.page.text_content("#status")
    for word in words:
        assert word in text, text
    return text


def test_each_failure_shows_its_sentence_and_recovers_without_reload(page: Page) -> None:
    """RELIABILITY.md lines 36 and 45: no token, a server that cannot be reached, one
    that is unavailable and a spent budget each get a sentence that says what to do (raw
    status under "details"), and each recovers without a reload."""
    import grpc

    from cryptorec.services.rpc.details import ErrorDetails, status_with

    # No token: the sentence points at the token field, and entering one goes on.
    page.page.goto(page.served.url)
    _status_says(page, "needs an access token", "Access token")
    assert page.page.get_attribute("#token-box", "open") is not None
    assert "Unauthenticated" in page.page.text_content("#status-raw")
    page.page.fill("#token", page.served.token)
    page.page.dispatch_event("#token", "change")
    page.page.wait_for_selector("body[data-ready=true]", timeout=60_000)

    # The server cannot be reached, then is unavailable: the page retries by itself.
    page.page.route("**/GetModel", lambda route: route.abort())
    page.page.reload()
    _status_says(page, "cannot be reached", "tries again in")
    page.page.unroute("**/GetModel")
    page.page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    page.page.route(
        "**/GetModel", lambda route: route.fulfill(**_grpc_web_error(14, "Cancelling all calls"))
    )
    page.page.reload()
    _status_says(page, "unavailable", "tries again in")
    page.page.unroute("**/GetModel")
    page.page.wait_for_selector("body[data-ready=true]", timeout=30_000)

    # A spent budget: said with when to ask again; the key id shows the key set registered
    # before the query was refused; once the budget is back, "Recommend" works.
    spent = status_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "budget spent",
        ErrorDetails(reason="QUOTA_EXCEEDED", retry_after=3600.0),
    )
    page.page.route(
        "**/PredictWhole", lambda route: route.fulfill(**_grpc_web_error(8, "spent", spent))
    )
    page.rate({5: 4.0, 9: 2.0})
    page.page.click("#recommend")
    _status_says(page, "budget of queries", "60 min")
    assert "QUOTA_EXCEEDED" in page.page.text_content("#status-raw")
    key_id = page.page.text_content("[data-testid=key-id]")
    assert len(key_id) == 32, key_id  # registered, not "none yet"
    page.page.unroute("**/PredictWhole")
    assert page.recommend()["keyId"] == key_id
    assert page.page.is_hidden("#status-details")
    assert page.errors == []


AXE = Path(__file__).resolve().parents[1] / "web" / "node_modules" / "axe-core" / "axe.min.js"


def _serious_violations(page: Page) -> list[str]:
    _require(AXE.exists(), f"no axe-core at {AXE} (cd web && npm ci)")
    page.page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.page.evaluate(
        "async () => (await axe.run(document)).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_core_finds_no_serious_violation(page: Page) -> None:
    """RELIABILITY.md line 45, accessibility as axe-core checks it: the page with search
    results and ratings, with
    recommendations, and in an error state."""
    page.open()
    page.page.fill("#search", "Item 1")
    page.rate({5: 4.0})
    page.page.fill("#search", "Item 1")
    assert _serious_violations(page) == []
    page.recommend()
    assert _serious_violations(page) == []
    page.page.route("**/GetModel", lambda route: route.abort())
    page.page.reload()
    _status_says(page, "cannot be reached")
    page.page.click("#status-details summary")
    assert _serious_violations(page) == []


def test_the_page_works_390_pixels_wide(browser: Any, served: Served) -> None:
    """A phone: nothing wider than the screen, the rating buttons big enough to touch, and a
    recommendation end to end."""
    phone = Page(browser, served, viewport={"width": 390, "height": 844}, has_touch=True)
    try:
        phone.open()
        phone.page.fill("#search", "Item 1")
        box = phone.page.locator("[data-testid=rate-1-5]").bounding_box()
        assert box is not None
        assert box["width"] >= 32
        assert box["height"] >= 32
        phone.rate({5: 4.0, 9: 2.0})
        phone.recommend()
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        assert phone.errors == []
    finally:
        phone.close()

// The page: search the catalogue, rate a few movies, get recommendations computed on
// ciphertexts. Keys and ratings stay in this browser; see recommender.ts for the protocol.

import type { GetModelResponse } from "./gen/cryptorec/v1/model_service_pb";
import { duration, explain, type Explained } from "./errors";
import { PrivateRecommender, isStars, type Result } from "./recommender";
import { allKeys, forgetKeys, loadRatings, saveRatings } from "./keystore";
import { SealWorker } from "./worker-protocol";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let ratings = new Map<number, number>();
const token = () => sessionStorage.getItem("cryptorec-token") ?? "";
const recommender = new PrivateRecommender(location.origin, new SealWorker("./seal-worker.js"), token);
let catalogue: { itemId: number; title: string }[] = [];
let catalogueLoaded = false;
/** What failed last and can be tried again (loading the model or a recommendation). */
let pending: (() => Promise<void>) | undefined;
let retryTimer: number | undefined;

declare global {
  interface Window {
    /** The last result, for tests, benchmarks and the curious: scores in catalogue order and
     * what the request cost. */
    cryptorecLast?: { itemIds: number[]; predictions: number[]; keyId: string; costs: Result["costs"] };
  }
}

function status(text: string): void {
  $("status").textContent = text;
  $("status").className = "";
  $("status-details").hidden = true;
}

/** Show why `action` failed and set up its fix: the token field, or a retry by the page. */
function failed(what: string, error: unknown, action: () => Promise<void>): void {
  const e: Explained = explain(error, token() !== "");
  $("status").textContent = `${what}: ${e.sentence}`;
  $("status").className = "error";
  $("status-raw").textContent = e.raw;
  $("status-details").hidden = false;
  pending = action;
  window.clearTimeout(retryTimer);
  if (e.fix === "token") {
    $<HTMLDetailsElement>("token-box").open = true;
    $<HTMLInputElement>("token").focus();
  } else if (e.fix === "retry" && e.retryIn !== undefined) {
    countdown(what, e, Date.now() + e.retryIn * 1000);
  }
}

function countdown(what: string, e: Explained, at: number): void {
  const left = (at - Date.now()) / 1000;
  if (left <= 0) {
    void retryPending();
    return;
  }
  $("status").textContent = `${what}: ${e.sentence} The page tries again in ${duration(left)}.`;
  retryTimer = window.setTimeout(() => countdown(what, e, at), Math.min(1000, left * 1000));
}

async function retryPending(): Promise<void> {
  const action = pending;
  pending = undefined;
  window.clearTimeout(retryTimer);
  if (action) await action();
}

function kb(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

// Ratings are written one save at a time, in the order they were made, so the last change is
// the one kept; body[data-saved] says whether every change so far is in IndexedDB.
let saving: Promise<boolean> = Promise.resolve(true);

/** Write the current ratings after any save still under way; true once they are kept. */
function keepRatings(): Promise<boolean> {
  const snapshot = new Map(ratings);
  document.body.dataset.saved = "false";
  const done: Promise<boolean> = saving
    .then(() => saveRatings(snapshot))
    .then(
      () => {
        if (saving === done) document.body.dataset.saved = "true";
        return true;
      },
      (error: unknown) => {
        failed("Could not keep your ratings in this browser", error, async () => {
          await keepRatings();
        });
        return false;
      },
    );
  saving = done;
  return done;
}

function rate(itemId: number, r: number | undefined): void {
  if (r === undefined) ratings.delete(itemId);
  else ratings.set(itemId, r);
  void keepRatings();
  renderSearch();
  renderRated();
}

/** Five buttons, 1 to 5 stars, for `title`: a labelled group, each button saying what it does
 * and whether it is the chosen rating. */
function stars(itemId: number, title: string): HTMLElement {
  const group = document.createElement("span");
  group.className = "stars";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", `your rating of ${title}, in stars`);
  for (let r = 1; r <= 5; r++) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${r}★`;
    b.dataset.testid = `rate-${itemId}-${r}`;
    const chosen = ratings.get(itemId) === r;
    b.className = chosen ? "chosen" : "";
    b.setAttribute("aria-pressed", String(chosen));
    b.setAttribute("aria-label", `${r} star${r > 1 ? "s" : ""}`);
    b.onclick = () => rate(itemId, r);
    group.append(b);
  }
  return group;
}

function renderSearch(): void {
  const query = $<HTMLInputElement>("search").value.trim().toLowerCase();
  const list = $("matches");
  const note = $("search-note");
  list.replaceChildren();
  note.textContent = "";
  if (!query) return;
  if (!catalogueLoaded) {
    note.textContent = "The catalogue is not loaded yet (see the message at the top); search works once it is.";
    return;
  }
  if (!catalogue.length) {
    note.textContent = "The served model has an empty catalogue: there is nothing to rate. Tell the service's operator.";
    return;
  }
  const found = catalogue.filter((c) => c.title.toLowerCase().includes(query));
  if (!found.length) {
    note.textContent = `No title contains “${query}”. Try fewer letters or another word.`;
    return;
  }
  for (const item of found.slice(0, 12)) {
    const li = document.createElement("li");
    const title = document.createElement("span");
    title.textContent = item.title;
    li.append(title, stars(item.itemId, item.title));
    list.append(li);
  }
  if (found.length > 12) note.textContent = `${found.length - 12} more match: type more of the title.`;
}

function renderRated(): void {
  const list = $("rated");
  list.replaceChildren();
  const titles = new Map(catalogue.map((c) => [c.itemId, c.title]));
  for (const [itemId, r] of ratings) {
    const li = document.createElement("li");
    const title = titles.get(itemId) ?? `item ${itemId}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "remove";
    remove.setAttribute("aria-label", `remove your rating of ${title}`);
    remove.onclick = () => rate(itemId, undefined);
    li.append(`${title}: ${r} star${r > 1 ? "s" : ""} `, remove);
    list.append(li);
  }
  $("rated-none").hidden = ratings.size > 0;
  $<HTMLButtonElement>("recommend").disabled = ratings.size === 0;
  $<HTMLButtonElement>("clear-ratings").disabled = ratings.size === 0;
}

function renderResult(result: Result, info: GetModelResponse): void {
  const list = $("recommendations");
  list.replaceChildren();
  $("scores-meaning").textContent = result.stars
    ? "Scores are predicted stars (1 to 5)."
    : "Ranked by a model trained for top-10 lists: its scores only order the list; they are not stars.";
  for (const r of result.recommendations) {
    const li = document.createElement("li");
    li.dataset.itemId = String(r.itemId);
    li.append(`${r.title} `);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = result.stars ? `${r.score.toFixed(2)} ★` : r.score.toFixed(2);
    score.setAttribute("aria-label", result.stars ? `predicted ${r.score.toFixed(1)} stars` : `ranking score ${r.score.toFixed(2)}`);
    score.title = result.stars ? "predicted stars" : "ranking score (orders the list; not stars)";
    li.append(score);
    list.append(li);
  }
  const costs = $("costs");
  costs.replaceChildren();
  const row = (what: string, value: string, testid?: string) => {
    const tr = document.createElement("tr");
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = what;
    const cell = document.createElement("td");
    cell.textContent = value;
    if (testid) cell.dataset.testid = testid;
    tr.append(name, cell);
    costs.append(tr);
  };
  for (const [phase, s] of Object.entries(result.costs.seconds)) row(phase, `${(s * 1000).toFixed(0)} ms`);
  for (const [what, b] of Object.entries(result.costs.bytes)) {
    row(`${what === "reply" ? "received" : "sent"}: ${what}`, kb(b), `bytes-${what}`);
  }
  const sent = $("sent");
  sent.replaceChildren();
  for (const s of result.costs.sent) {
    const li = document.createElement("li");
    li.textContent = `${s.name}: ${kb(s.size)} (${s.kind})`;
    sent.append(li);
  }
  window.cryptorecLast = {
    itemIds: info.catalogue.map((c) => Number(c.itemId)),
    predictions: Array.from(result.predictions),
    keyId: result.keyId,
    costs: result.costs,
  };
}

async function renderKeys(): Promise<void> {
  const keys = await allKeys();
  const registered = keys.filter((k) => k.keyId);
  $("key-id").textContent = registered.length
    ? registered.map((k) => k.keyId).join(", ")
    : keys.length ? "(made, not registered yet)" : "none yet";
  $("key-created").textContent = keys.length ? new Date(keys[0].created).toLocaleString() : "";
}

async function recommend(): Promise<void> {
  const button = $<HTMLButtonElement>("recommend");
  button.disabled = true;
  status("encrypting and asking…");
  try {
    const result = await recommender.recommend(ratings, 10);
    renderResult(result, await recommender.model());
    await renderKeys();
    status(`done: ${result.recommendations.length} recommendations from model ${result.modelVersion}`);
  } catch (error) {
    // The keys may have been made and registered even if the query then failed: show them
    // before the failure, which is the last thing this request changes on the page.
    await renderKeys();
    failed("The recommendation failed", error, recommend);
  } finally {
    button.disabled = ratings.size === 0;
  }
}

async function loadModel(): Promise<void> {
  status("loading the catalogue…");
  try {
    const t0 = performance.now();
    const info = await recommender.model();
    const ms = (performance.now() - t0).toFixed(0);
    catalogue = info.catalogue.map((c) => ({ itemId: Number(c.itemId), title: c.title }));
    catalogueLoaded = true;
    const [kind, meaning] = isStars(info)
      ? ["stars model", "its scores are predicted stars"]
      : ["ranking model", "its scores order the list; they are not stars"];
    $("model").textContent = `${kind} ${info.version}: ${catalogue.length} items (loaded in ${ms} ms); ${meaning}.`;
    status(catalogue.length
      ? "ready: search for movies you know and rate them"
      : "The served model has an empty catalogue: there is nothing to rate. Tell the service's operator.");
    renderRated();
    renderSearch();
    document.body.dataset.ready = "true";
  } catch (error) {
    failed("Could not load the catalogue", error, loadModel);
  }
}

/** A token handed over in the address (#token=...; fragments never reach a server) is kept
 * for this tab and removed from the address bar. */
function takeTokenFromAddress(): void {
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (given) {
    sessionStorage.setItem("cryptorec-token", given);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

async function start(): Promise<void> {
  takeTokenFromAddress();
  $<HTMLInputElement>("search").oninput = renderSearch;
  $<HTMLButtonElement>("recommend").onclick = recommend;
  $<HTMLButtonElement>("forget").onclick = async () => {
    await forgetKeys();
    await renderKeys();
    status("keys forgotten: new ones are made at the next request");
  };
  $<HTMLButtonElement>("clear-ratings").onclick = async () => {
    ratings = new Map();
    renderRated();
    renderSearch();
    if (await keepRatings()) status("ratings cleared");
  };
  const tokenInput = $<HTMLInputElement>("token");
  tokenInput.value = token();
  tokenInput.onchange = () => {
    sessionStorage.setItem("cryptorec-token", tokenInput.value.trim());
    void retryPending(); // whatever the missing token stopped goes on, without a reload
  };
  ratings = await loadRatings();
  renderRated();
  await renderKeys();
  await loadModel();
}

void start();

// The page: search the catalogue, rate a few movies, get recommendations computed on
// ciphertexts. Keys and ratings stay in this browser; see recommender.ts for the protocol.

import type { GetModelResponse } from "./gen/cryptorec/v1/model_service_pb";
import { describe } from "./errors";
import { PrivateRecommender, isStars, type Result } from "./recommender";
import { allKeys, forgetKeys } from "./keystore";
import { SealWorker } from "./worker-protocol";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ratings = new Map<number, number>();
const token = () => sessionStorage.getItem("cryptorec-token") ?? "";
const recommender = new PrivateRecommender(location.origin, new SealWorker("./seal-worker.js"), token);
let catalogue: { itemId: number; title: string }[] = [];

declare global {
  interface Window {
    /** The last result, for tests, benchmarks and the curious: scores in catalogue order and
     * what the request cost. */
    cryptorecLast?: { itemIds: number[]; predictions: number[]; keyId: string; costs: Result["costs"] };
  }
}

function status(text: string, error = false): void {
  const el = $("status");
  el.textContent = text;
  el.className = error ? "error" : "";
}

function kb(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function stars(itemId: number): HTMLElement {
  const span = document.createElement("span");
  span.className = "stars";
  for (let r = 1; r <= 5; r++) {
    const b = document.createElement("button");
    b.textContent = String(r);
    b.dataset.testid = `rate-${itemId}-${r}`;
    b.className = ratings.get(itemId) === r ? "chosen" : "";
    b.onclick = () => {
      ratings.set(itemId, r);
      renderSearch();
      renderRated();
    };
    span.append(b);
  }
  return span;
}

function renderSearch(): void {
  const query = $<HTMLInputElement>("search").value.trim().toLowerCase();
  const list = $("matches");
  list.replaceChildren();
  if (!query) return;
  for (const item of catalogue.filter((c) => c.title.toLowerCase().includes(query)).slice(0, 12)) {
    const li = document.createElement("li");
    li.append(item.title, stars(item.itemId));
    list.append(li);
  }
}

function renderRated(): void {
  const list = $("rated");
  list.replaceChildren();
  const titles = new Map(catalogue.map((c) => [c.itemId, c.title]));
  for (const [itemId, r] of ratings) {
    const li = document.createElement("li");
    const remove = document.createElement("button");
    remove.textContent = "remove";
    remove.onclick = () => {
      ratings.delete(itemId);
      renderRated();
      renderSearch();
    };
    li.append(`${titles.get(itemId) ?? itemId}: ${r}`, remove);
    list.append(li);
  }
  $<HTMLButtonElement>("recommend").disabled = ratings.size === 0;
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
    score.title = result.stars ? "predicted stars" : "ranking score";
    li.append(score);
    list.append(li);
  }
  const costs = $("costs");
  costs.replaceChildren();
  for (const [phase, s] of Object.entries(result.costs.seconds)) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${phase}</td><td>${(s * 1000).toFixed(0)} ms</td>`;
    costs.append(tr);
  }
  for (const [what, b] of Object.entries(result.costs.bytes)) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${what === "reply" ? "received" : "sent"}: ${what}</td><td data-testid="bytes-${what}">${kb(b)}</td>`;
    costs.append(tr);
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
  $("key-id").textContent = keys.length ? keys.map((k) => k.keyId || "(not registered)").join(", ") : "none yet";
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
    status(`failed: ${describe(error)}`, true);
  } finally {
    button.disabled = ratings.size === 0;
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
  const tokenInput = $<HTMLInputElement>("token");
  tokenInput.value = token();
  tokenInput.onchange = () => sessionStorage.setItem("cryptorec-token", tokenInput.value.trim());
  await renderKeys();
  try {
    const t0 = performance.now();
    const info = await recommender.model();
    const ms = (performance.now() - t0).toFixed(0);
    catalogue = info.catalogue.map((c) => ({ itemId: Number(c.itemId), title: c.title }));
    const kind = isStars(info) ? "stars model" : "ranking model";
    $("model").textContent = `${kind} ${info.version}: ${catalogue.length} items (loaded in ${ms} ms)`;
    status("ready: search for movies you know and rate them");
    document.body.dataset.ready = "true";
  } catch (error) {
    status(`could not load the model: ${describe(error)}`, true);
  }
}

void start();

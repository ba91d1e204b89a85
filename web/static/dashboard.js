// The dashboard's data: polls the read API (/api/v1, same origin) every 2 s and updates the page
// in place, no reload. Every value shown is the API's string as sent, also kept in a data-*
// attribute so that a test (or a curious operator) can read it back exactly.
// Auth: fetch sends the browser's Basic credentials for this origin; a token typed into the page
// is kept in sessionStorage (this tab only) and sent as `Authorization: Bearer`.
"use strict";

const POLL_MS = 2000;
const WINDOW_BARS = 60; // candles shown: the last 60 bars before the newest trade
const TRADES_SHOWN = 20;
const MAX_PAGES = 10; // a paged read stops there (10 x 1000 items), the page says so
const TOKEN_KEY = "okx-collector-token";
// VWAP marks come one per second: the line covers at most the window's last 61 minutes (all of
// a 1m chart; about 3700 marks, 4 pages), not the 216 000 marks of sixty 1H bars
const VWAP_SPAN_MS = 61 * 60e3;
const BAR_MS = { "1m": 60e3, "3m": 180e3, "5m": 300e3, "15m": 900e3, "30m": 1800e3,
  "1H": 3600e3, "2H": 7200e3, "4H": 14400e3 };

const $ = (sel) => document.querySelector(sel);
let refreshes = 0;

class HttpError extends Error {
  constructor(status, path, detail) {
    super(`${path}: HTTP ${status}${detail ? ` (${detail})` : ""}`);
    this.status = status;
  }
}

// `accept`: statuses besides 2xx whose JSON body is the answer (/health is 503 unless "ok").
async function api(path, params, accept = []) {
  const query = new URLSearchParams(params || {}).toString();
  const url = `/api/v1/${path}${query ? `?${query}` : ""}`;
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const reply = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
  if (!reply.ok && !accept.includes(reply.status)) {
    let detail = "";
    try { const body = await reply.json(); detail = body.error || body.detail; } catch (e) { /* not JSON */ }
    throw new HttpError(reply.status, path, typeof detail === "string" ? detail : "");
  }
  return reply.json();
}

// Every item of a paged endpoint ({items, next}), following the opaque cursor.
async function allPages(path, params) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const reply = await api(path, cursor ? { ...params, cursor } : params);
    items.push(...reply.items);
    cursor = reply.next;
    if (!cursor) return { items, truncated: false };
  }
  return { items, truncated: true };
}

function show(sel, value, attr = "value") {
  const el = $(sel);
  const text = value === undefined || value === null || value === "" ? "–" : String(value);
  el.textContent = text;
  el.dataset[attr] = value === undefined || value === null ? "" : String(value);
  return el;
}

function cell(row, text, field, cls) {
  const td = row.insertCell();
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (field) td.dataset.field = field;
  if (cls) td.className = cls;
  return td;
}

// ----- connections and freshness (GET /health, public) ------------------------------------------

function renderHealth(health) {
  const verdict = show("#verdict", health.verdict, "verdict");
  verdict.dataset.value = health.verdict;
  $("#reasons").textContent = (health.reasons || []).join("; ");
  const body = $("#connections tbody");
  body.replaceChildren();
  const connections = (health.feeder && health.feeder.connections) || [];
  for (const conn of connections) {
    // one feeder: the connection's name; redundant feeders: feeder/name
    const name = conn.feeder && connections.some((c) => c.feeder !== conn.feeder)
      ? `${conn.feeder}/${conn.name}` : conn.name;
    const row = body.insertRow();
    row.className = "conn";
    row.dataset.conn = name;
    row.dataset.state = conn.state;
    cell(row, name, "name");
    cell(row, conn.state, "state", `state-${conn.state}`);
    for (const sub of conn.subscriptions || []) {
      const subRow = body.insertRow();
      subRow.className = "sub";
      subRow.dataset.sub = `${name}|${sub.channel}|${sub.instId}`;
      subRow.dataset.status = sub.status || "";
      subRow.dataset.ageMs = sub.age_ms === null || sub.age_ms === undefined ? "" : String(sub.age_ms);
      cell(subRow, `${sub.channel} ${sub.instId}`, "subscription");
      const age = sub.age_ms === null || sub.age_ms === undefined ? "no data" : `${sub.age_ms} ms`;
      // pending | sent | acked | failed (okx/ws): only a subscription not acked says so
      const status = sub.status && sub.status !== "acked" ? ` (${sub.status})` : "";
      cell(subRow, age + status, "age_ms", sub.age_ms > 10000 || status ? "stale" : "");
    }
  }
  if (!connections.length) cell(body.insertRow(), "no feeder connections reported", "none");
}

// ----- feeders per shard (GET /feeders) ---------------------------------------------------------

function renderFeeders(view) {
  const warnings = view.warnings || [];
  show("#feeder-warnings", warnings.length, "count").textContent = warnings.join("; ");
  const body = $("#shards tbody");
  body.replaceChildren();
  for (const sh of view.shards || []) {
    const row = body.insertRow();
    row.className = "shard";
    row.dataset.shard = sh.shard;
    row.dataset.live = String(sh.live);
    cell(row, `shard ${sh.shard}`, "shard");
    const streams = sh.streams || [];
    const mean = streams.length
      ? streams.reduce((a, x) => a + x.covered_share, 0) / streams.length : null;
    const lowest = sh.worst ? `, lowest ${sh.worst.channel} ${sh.worst.instId} ${(100 * sh.worst.covered_share).toFixed(1)}%` : "";
    const cover = mean === null ? "no coverage yet" : `${(100 * mean).toFixed(1)}% covered${lowest}`;
    cell(row, `${sh.live} of ${sh.feeders.length} live · ${cover}`, "coverage",
      sh.feeders.length >= 2 && sh.live <= 1 ? "stale" : "");
    for (const f of sh.feeders) {
      const fr = body.insertRow();
      fr.className = "feeder";
      fr.dataset.feeder = f.id;
      fr.dataset.live = String(f.live);
      cell(fr, f.id, "feeder");
      const beat = f.heartbeat_age_s === null || f.heartbeat_age_s === undefined
        ? "no heartbeat" : `heartbeat ${f.heartbeat_age_s} s ago`;
      const conns = (f.connections || []).map((c) => `${c.name} ${c.state}`).join(", ");
      cell(fr, `${f.live ? "live" : "DOWN"} · ${beat}${conns ? " · " + conns : ""}`, "state",
        f.live ? "" : "stale");
    }
  }
  if (!(view.shards || []).length) cell(body.insertRow(), "no shard reported", "none");
}

// ----- gap timeline (GET /gaps) -----------------------------------------------------------------

function renderGaps(gaps, truncated) {
  const counts = { open: 0, filling: 0, failed: 0, filled: 0, unrepairable: 0, covered: 0 };
  for (const g of gaps) counts[g.status] = (counts[g.status] || 0) + 1;
  for (const [status, n] of Object.entries(counts)) {
    const el = $(`#gaps-${status}`);
    if (el) show(`#gaps-${status}`, n, "count");
  }
  show("#gaps-total", truncated ? `${gaps.length}+` : gaps.length, "count");
  Charts.drawGaps($("#gap-timeline"), gaps, Date.now());
}

// ----- one instrument: ticker, candles (trades, else okx), VWAP, latest trades ------------------

async function candlesFor(inst, bar, start) {
  const params = { bar, start: String(start), limit: "1000" };
  const fromTrades = await allPages(`candles/${encodeURIComponent(inst)}`, { ...params, source: "trades" });
  if (fromTrades.items.length) return { source: "trades", items: fromTrades.items };
  const fromOkx = await allPages(`candles/${encodeURIComponent(inst)}`, { ...params, source: "okx" });
  return { source: fromOkx.items.length ? "okx" : "", items: fromOkx.items };
}

async function optional(promise) {
  try { return await promise; } catch (e) {
    if (e instanceof HttpError && e.status === 404) return null; // nothing stored yet
    throw e;
  }
}

async function refreshInstrument(inst) {
  const bar = $("#bar").value;
  const barMs = BAR_MS[bar];
  const id = encodeURIComponent(inst);
  const [ticker, trades, latestVwap] = await Promise.all([
    optional(api(`ticker/${id}`)),
    api(`trades/${id}/latest`, { limit: String(TRADES_SHOWN) }),
    optional(api(`vwap/${id}`)),
  ]);
  // The window ends at the exchange's latest time (okxsim's clock may not be this machine's).
  const newest = Math.max(Number((ticker && ticker.ts) || 0), ...trades.items.map((t) => Number(t.ts)));
  const end = newest > 0 ? newest : Date.now();
  const start = Math.floor(end / barMs) * barMs - (WINDOW_BARS - 1) * barMs;
  const vwapStart = Math.max(start, end - VWAP_SPAN_MS);
  const [candles, vwap] = await Promise.all([
    candlesFor(inst, bar, start),
    allPages(`vwap/${id}/range`, { start: String(vwapStart), limit: "1000" }),
  ]);
  if (inst !== $("#instrument").value) return; // the user picked another one meanwhile

  show("#last-price", ticker ? ticker.last : null);
  // a VWAP can carry 30 digits: the full string stays in data-value and the tooltip, the
  // text is cut by CSS (an ellipsis shows it is cut), never rounded
  const vwapEl = show("#vwap-latest", latestVwap ? latestVwap.vwap : null);
  vwapEl.title = latestVwap ? latestVwap.vwap : "";
  vwapEl.dataset.ts = latestVwap ? String(latestVwap.ts) : "";
  show("#vwap-validated", latestVwap ? String(latestVwap.validated) : null);
  show("#candle-count", candles.items.length);
  show("#candle-source", candles.source);
  show("#vwap-count", vwap.items.length);
  const chart = $("#candle-chart");
  chart.dataset.start = String(start);
  chart.dataset.vwapStart = String(vwapStart);
  chart.dataset.bar = bar;
  chart.dataset.inst = inst;
  Charts.drawCandles(chart, candles.items, vwap.items, barMs);

  const body = $("#trades tbody");
  body.replaceChildren();
  for (const t of trades.items) {
    const row = body.insertRow();
    row.dataset.tradeId = t.tradeId;
    cell(row, Charts.hhmm(t.ts), "ts").dataset.value = t.ts;
    cell(row, t.tradeId, "tradeId");
    cell(row, t.side, "side", `side-${t.side}`);
    cell(row, t.px, "px", "num");
    cell(row, t.sz, "sz", "num");
  }
}

async function refreshInstruments() {
  const { items } = await api("instruments");
  const select = $("#instrument");
  const chosen = select.value || new URLSearchParams(location.hash.slice(1)).get("inst");
  const known = [...select.options].map((o) => o.value);
  if (known.join() !== items.join()) {
    select.replaceChildren(...items.map((inst) => new Option(inst, inst)));
  }
  if (chosen && items.includes(chosen)) select.value = chosen;
  return select.value;
}

// ----- the loop: one refresh at a time, the next 2 s after the last one ended -------------------

function setStatus(state, text) {
  const el = $("#status");
  el.dataset.state = state;
  el.textContent = text;
}

async function refresh() {
  const problems = [];
  const health = api("health", {}, [503]).then(renderHealth);
  const gaps = allPages("gaps", { limit: "1000" }).then((g) => renderGaps(g.items, g.truncated));
  const inst = refreshInstruments().then((chosen) => (chosen ? refreshInstrument(chosen) : null));
  // an API from before /feeders (a page newer than its web process): the panel stays empty
  const feeders = optional(api("feeders", {})).then((v) => (v ? renderFeeders(v) : null));
  for (const result of await Promise.allSettled([health, gaps, inst, feeders])) {
    if (result.status === "rejected") problems.push(result.reason);
  }
  refreshes += 1;
  document.body.dataset.refreshes = String(refreshes);
  if (problems.some((e) => e instanceof HttpError && e.status === 401)) {
    setStatus("unauthorized", "not authorised: log in to this site or enter an API token");
  } else if (problems.length) {
    setStatus("error", problems.map((e) => e.message).join("; "));
  } else {
    setStatus("ok", "live");
  }
  show("#updated-at", new Date().toISOString().slice(11, 19)).dataset.refreshes = String(refreshes);
}

async function loop() {
  try { await refresh(); } finally { setTimeout(loop, POLL_MS); }
}

function onChoice() {
  const inst = $("#instrument").value;
  if (inst) history.replaceState(null, "", `#inst=${encodeURIComponent(inst)}`);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#instrument").addEventListener("change", onChoice);
  $("#bar").addEventListener("change", onChoice);
  $("#auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("#token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    refresh();
  });
  $("#token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); refresh(); });
  loop();
});

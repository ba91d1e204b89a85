// SVG charts of the dashboard, drawn by hand (no chart library: the page must work offline and
// the project installs no JavaScript package). Prices arrive as exact decimal strings; they are
// turned into numbers only to place pixels, never to show a value.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function hhmm(ms) {
  return new Date(Number(ms)).toISOString().slice(11, 19);
}

function viewBox(svg) {
  const [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
  return { w, h };
}

// Candles (oldest first, OKX fields as strings) and VWAP marks ({ts, vwap}) on one price scale.
function drawCandles(svg, candles, vwap, barMs) {
  clear(svg);
  const { w, h } = viewBox(svg);
  const pad = { l: 64, r: 8, t: 10, b: 20 };
  if (!candles.length && !vwap.length) {
    svg.appendChild(svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, "no candles yet"));
    return;
  }
  const prices = [];
  for (const c of candles) prices.push(Number(c.h), Number(c.l));
  for (const v of vwap) prices.push(Number(v.vwap));
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (hi === lo) { hi += 1; lo -= 1; }
  const times = candles.map((c) => Number(c.ts)).concat(vwap.map((v) => Number(v.ts)));
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + barMs);
  const x = (t) => pad.l + ((t - t0) / (t1 + barMs - t0)) * (w - pad.l - pad.r);
  const y = (p) => pad.t + ((hi - p) / (hi - lo)) * (h - pad.t - pad.b);
  const slot = Math.max(1, x(t0 + barMs) - x(t0));

  for (const p of [hi, (hi + lo) / 2, lo]) {
    svg.appendChild(svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y(p), y2: y(p), stroke: "#2a3744" }));
    svg.appendChild(svgEl("text", { x: 4, y: y(p) + 4 }, String(Number(p.toPrecision(8)))));
  }
  svg.appendChild(svgEl("text", { x: pad.l, y: h - 5 }, hhmm(t0)));
  svg.appendChild(svgEl("text", { x: w - pad.r, y: h - 5, "text-anchor": "end" }, hhmm(t1)));

  for (const c of candles) {
    const up = Number(c.c) >= Number(c.o);
    const cls = `candle ${up ? "up" : "down"}${c.complete === false ? " incomplete" : ""}`;
    const g = svgEl("g", { class: cls, "data-ts": c.ts, "data-o": c.o, "data-h": c.h,
      "data-l": c.l, "data-c": c.c, "data-vol": c.vol, "data-complete": String(c.complete) });
    const cx = x(Number(c.ts)) + slot / 2;
    g.appendChild(svgEl("line", { x1: cx, x2: cx, y1: y(Number(c.h)), y2: y(Number(c.l)) }));
    const top = y(Math.max(Number(c.o), Number(c.c)));
    const bottom = y(Math.min(Number(c.o), Number(c.c)));
    g.appendChild(svgEl("rect", { x: cx - slot * 0.35, width: Math.max(1, slot * 0.7),
      y: top, height: Math.max(1, bottom - top) }));
    g.appendChild(svgEl("title", {}, `${hhmm(c.ts)} o ${c.o} h ${c.h} l ${c.l} c ${c.c} vol ${c.vol}`));
    svg.appendChild(g);
  }
  if (vwap.length) {
    const points = vwap.map((v) => `${x(Number(v.ts)).toFixed(1)},${y(Number(v.vwap)).toFixed(1)}`);
    svg.appendChild(svgEl("polyline", { id: "vwap-line", points: points.join(" "),
      "data-points": vwap.length, "data-first-ts": vwap[0].ts, "data-last-ts": vwap[vwap.length - 1].ts }));
  }
}

// The gap ledger on a time axis: one lane per (channel, instId), one bar per gap, by status.
const LANE_PX = 14;

function drawGaps(svg, gaps, nowMs) {
  clear(svg);
  const { w } = viewBox(svg);
  const lanes = [...new Set(gaps.map((g) => `${g.channel} ${g.instId}`))].sort();
  // one readable lane per stream: the chart grows with the lanes instead of squeezing them
  const h = Math.max(60, lanes.length * LANE_PX + 22);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("height", String(h));
  if (!gaps.length) {
    svg.appendChild(svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, "no gaps recorded"));
    return;
  }
  const t0 = Math.min(...gaps.map((g) => Number(g.start)));
  const t1 = Math.max(nowMs, ...gaps.map((g) => Number(g.end)));
  const pad = { l: 150, r: 6, t: 4, b: 16 };
  const laneH = LANE_PX;
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad.l - pad.r);
  lanes.forEach((lane, i) => {
    svg.appendChild(svgEl("text", { x: 2, y: pad.t + i * laneH + laneH * 0.75 }, lane));
  });
  svg.appendChild(svgEl("text", { x: pad.l, y: h - 3 }, hhmm(t0)));
  svg.appendChild(svgEl("text", { x: w - pad.r, y: h - 3, "text-anchor": "end" }, hhmm(t1)));
  for (const g of gaps) {
    const lane = lanes.indexOf(`${g.channel} ${g.instId}`);
    const x0 = x(Number(g.start));
    const rect = svgEl("rect", { class: `gap ${g.status}`, "data-gap-id": g.id,
      "data-status": g.status, x: x0, width: Math.max(2, x(Number(g.end)) - x0),
      y: pad.t + lane * laneH + 1, height: Math.max(2, laneH - 2) });
    const why = g.reason ? ` (${g.reason})` : "";
    rect.appendChild(svgEl("title", {}, `${g.channel} ${g.instId} ${hhmm(g.start)}-${hhmm(g.end)} ${g.status}${why}`));
    svg.appendChild(rect);
  }
}

window.Charts = { drawCandles, drawGaps, hhmm };

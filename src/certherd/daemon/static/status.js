// certherd's status page: reads /status.json (same origin) and draws it. CA and user data
// are written as text only (textContent), never parsed as HTML.
"use strict";

const REFRESH_MS = 30000;
const MOST_ROWS = 500; // a fleet's page stays quick: narrow the rest with the filter or search
const ATTENTION = new Set(["failing", "expired", "damaged", "revoked"]);
const ORDER = { failing: 0, expired: 0, damaged: 0, revoked: 1, due: 2, pending: 3, ok: 4 };
const WORDS = { failing: "failing", expired: "expired", damaged: "damaged", revoked: "revoked",
  due: "due now", pending: "not obtained", ok: "fine" };
let data = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

function relative(iso, now) {
  if (!iso) return "";
  const seconds = (new Date(iso) - now) / 1000;
  const abs = Math.abs(seconds);
  let text;
  if (abs < 90) text = Math.round(abs) + " s";
  else if (abs < 5400) text = Math.round(abs / 60) + " min";
  else if (abs < 172800) text = Math.round(abs / 3600) + " h";
  else text = Math.round(abs / 86400) + " days";
  return seconds >= 0 ? "in " + text : text + " ago";
}

function matches(row, filter, words) {
  if (filter === "attention" && !ATTENTION.has(row.condition)) return false;
  if (filter !== "all" && filter !== "attention" && row.condition !== filter) return false;
  if (!words.length) return true;
  const haystack = [row.name, ...(row.names || []), row.ca, ...(row.cas || []), row.issuer,
    row.serial, row.holder, row.obtained_by, row.last_error, row.reason, row.condition]
    .filter(Boolean).join(" ").toLowerCase();
  return words.every((word) => haystack.includes(word));
}

function shown() {
  const filter = document.getElementById("filter").value;
  const words = document.getElementById("search").value.toLowerCase().split(/\s+/).filter(Boolean);
  return data.lineages.filter((row) => matches(row, filter, words));
}

function caName(url) {
  if (!url) return "—";
  try { return new URL(url).host; } catch (e) { return url; }
}

function drawRows(rows, now) {
  const body = document.getElementById("rows");
  body.replaceChildren();
  for (const row of rows.slice(0, MOST_ROWS)) {
    const tr = el("tr", null, "cond-" + row.condition);
    tr.dataset.name = row.name;
    tr.dataset.condition = row.condition;
    const state = el("td");
    state.append(el("span", WORDS[row.condition] || row.condition, "badge"));
    if (row.failures) state.append(el("div", row.failures + " failed attempt(s)"));
    const names = el("td", null, "names");
    names.append(el("strong", row.name));
    for (const name of row.names || []) if (name !== row.name) names.append(el("div", name));
    const ca = el("td", caName(row.ca || (row.cas || [])[0]));
    ca.title = (row.cas || []).join(" → ");
    if ((row.cas || []).length > 1) ca.append(el("div", "then " + row.cas.slice(1).map(caName).join(", ")));
    const expiry = el("td", when(row.not_after), "expiry");
    if (row.not_after) expiry.append(el("small", relative(row.not_after, now)));
    const reason = el("td", when(row.next_renewal), "reason");
    if (row.reason) reason.append(el("small", row.reason));
    const error = el("td", row.last_error || "—", "error");
    if (row.last_failure) error.title = "at " + when(row.last_failure);
    const node = el("td", row.holder ? row.holder + " (working on it)" : (row.obtained_by || "—"));
    if (row.obtained_by && row.holder) node.append(el("div", "obtained by " + row.obtained_by));
    tr.append(state, names, ca, expiry, reason, error, node);
    body.append(tr);
  }
  const drawn = Math.min(rows.length, MOST_ROWS);
  document.getElementById("count").textContent = drawn + " of " + data.lineages.length + " shown"
    + (drawn < rows.length ? " (" + rows.length + " match: search to narrow them)" : "");
}

function svg(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawTimeline(rows, now) {
  const width = 1000, height = 170, left = 34, bottom = 22, top = 8;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "expiries and planned renewals over time" });
  const moments = [];
  for (const row of rows) {
    if (row.not_after) moments.push(new Date(row.not_after).getTime());
    if (row.next_renewal) moments.push(new Date(row.next_renewal).getTime());
  }
  const start = now.getTime() - 0.04 * Math.max(1, ...moments.map((m) => m - now.getTime()));
  const end = Math.max(now.getTime() + 60000, ...moments);
  const buckets = 60, span = (end - start) / buckets;
  const counts = Array.from({ length: buckets }, () => ({ renewal: 0, expiry: 0 }));
  const slot = (moment) => Math.min(buckets - 1, Math.max(0, Math.floor((moment - start) / span)));
  for (const row of rows) {
    if (row.next_renewal) counts[slot(new Date(row.next_renewal).getTime())].renewal += 1;
    if (row.not_after) counts[slot(new Date(row.not_after).getTime())].expiry += 1;
  }
  const most = Math.max(1, ...counts.map((c) => Math.max(c.renewal, c.expiry)));
  const plotWidth = width - left - 6, plotHeight = height - top - bottom;
  const x = (moment) => left + ((moment - start) / (end - start)) * plotWidth;
  const step = plotWidth / buckets;
  chart.append(svg("line", { x1: left, x2: width - 6, y1: top + plotHeight, y2: top + plotHeight, class: "axis" }));
  chart.append(svg("text", { x: 2, y: top + 10 }, String(most)));
  chart.append(svg("text", { x: 2, y: top + plotHeight }, "0"));
  counts.forEach((count, index) => {
    for (const [kind, offset] of [["renewal", 0.1], ["expiry", 0.5]]) {
      if (!count[kind]) continue;
      const h = (count[kind] / most) * plotHeight;
      const bar = svg("rect", { x: left + index * step + offset * step, y: top + plotHeight - h,
        width: step * 0.4, height: h, class: "bar-" + kind });
      bar.append(svg("title", {}, count[kind] + " " + (kind === "renewal" ? "renewal(s)" : "expiry/expiries")
        + " around " + when(new Date(start + (index + 0.5) * span).toISOString())));
      chart.append(bar);
    }
  });
  const nowX = x(now.getTime());
  chart.append(svg("line", { x1: nowX, x2: nowX, y1: top, y2: top + plotHeight, class: "now" }));
  const short = end - start < 2 * 86400000;
  for (let i = 0; i <= 4; i += 1) {
    const moment = new Date(start + ((end - start) * i) / 4);
    const label = short ? moment.toISOString().slice(11, 16) : moment.toISOString().slice(0, 10);
    chart.append(svg("text", { x: Math.min(x(moment.getTime()), width - 70), y: height - 6 }, label));
  }
  document.getElementById("timeline").replaceChildren(chart);
}

function drawSummary(now) {
  const summary = document.getElementById("summary");
  summary.replaceChildren();
  const rows = data.lineages;
  const bad = rows.filter((row) => ATTENTION.has(row.condition)).length;
  const soon = rows.filter((row) => row.not_after && new Date(row.not_after) - now < 7 * 86400000
    && new Date(row.not_after) > now).length;
  summary.append(el("span", rows.length + " certificate(s): "));
  if (bad) summary.append(el("span", bad + " need(s) attention", "bad"));
  else summary.append(el("span", "all fine", "good"));
  if (soon) summary.append(el("span", " · " + soon + " expire(s) within 7 days"));
  if (!data.healthy && data.health) summary.append(el("span", " · unhealthy: " + data.health, "bad"));
  const meta = [];
  if (data.node) meta.push("node " + data.node);
  meta.push("as of " + when(data.generated));
  if (data.last_cycle) meta.push("last cycle " + when(data.last_cycle));
  if (data.stale) meta.push("(stale: storage is slow to answer)");
  document.getElementById("meta").textContent = meta.join(" · ");
}

function draw() {
  if (!data) return;
  const now = new Date(data.generated);
  const rows = shown().sort((a, b) => (ORDER[a.condition] ?? 5) - (ORDER[b.condition] ?? 5)
    || String(a.not_after || "9999").localeCompare(String(b.not_after || "9999"))
    || a.name.localeCompare(b.name));
  drawSummary(now);
  drawTimeline(rows, now);
  drawRows(rows, now);
}

async function load() {
  try {
    const response = await fetch("/status.json", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    data = await response.json();
    draw();
    document.body.dataset.loaded = "true";
  } catch (error) {
    document.getElementById("summary").textContent = "cannot read the status: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const params = new URLSearchParams(location.search);
  if (params.get("q")) document.getElementById("search").value = params.get("q");
  if (params.get("show")) document.getElementById("filter").value = params.get("show");
  document.getElementById("filter").addEventListener("change", draw);
  document.getElementById("search").addEventListener("input", draw);
  document.getElementById("controls").addEventListener("submit", (event) => event.preventDefault());
  load();
  setInterval(load, REFRESH_MS);
});

// The monitoring dashboard: signs in through POST /auth/token, then reads the admin JSON
// endpoints with the bearer token and draws plain SVG (no external library, no CDN).
// Each panel ends in data-state = ready | empty | error (tests/dashboard reads these).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fde", "#d9822b", "#2e9d62", "#9b59b6", "#d64545", "#17a2b8", "#7f8c8d", "#c0a000"];
const TOKEN_KEY = "accidents-dashboard-token";
const REFRESH_MS = 60000;
const AXIS_FONT_PX = 11;  // svg text's font-size in dashboard.css
const AXIS_GAP = 6;  // between a tick label and the plot
let refreshTimer = null;

// ------------------------------------------------------------------------------------- helpers

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of [].concat(children)) if (child != null) node.append(child);
  return node;
}

function sv(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text != null) node.textContent = text;
  return node;
}

function fmt(value, digits = 3) {
  return value == null || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

function pct(value) {
  return value == null ? "–" : `${(100 * value).toFixed(1)} %`;
}

function shortTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return `${d.toISOString().slice(5, 10)} ${d.toISOString().slice(11, 16)}`;
}

function colorFor(index) {
  return PALETTE[index % PALETTE.length];
}

// Colour swatches set through the CSSOM (the page's CSP allows that; inline style attributes it refuses).
function coloredLegend(items) {
  return el("div", { class: "legend" }, items.map(([label, color]) => {
    const swatch = el("i");
    swatch.style.background = color;
    return el("span", {}, [swatch, label]);
  }));
}

function panel(name) {
  return document.querySelector(`[data-panel="${name}"]`);
}

function setPanel(name, state, content, rows = 0) {
  const card = panel(name);
  const body = card.querySelector(".body");
  body.replaceChildren(...[].concat(content));
  card.dataset.state = state;
  card.dataset.rows = String(rows);
}

function empty(name, message) {
  setPanel(name, "empty", el("div", { class: "empty", text: message }));
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) { signOut("Session expired: sign in again."); throw new HttpError(401, "signed out"); }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new HttpError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response.json();
}

// --------------------------------------------------------------------------------------- axes

// Round y-axis ticks from 0: a step of 1, 2, 2.5 or 5 x 10^k, about `count` steps, the last tick
// the first one at or above `max` (never above `cap`: a share axis ends at 100 %).
function niceTicks(max, { count = 4, cap = Infinity, integer = false } = {}) {
  const raw = Math.max(max, Number.MIN_VALUE) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const candidates = [1, 2, 2.5, 5, 10].map((m) => m * power).filter((s) => !integer || Number.isInteger(s));
  const step = candidates.find((s) => s >= raw * (1 - 1e-9)) ?? 1;  // counts: never a step below 1
  const intervals = Math.ceil(max / step - 1e-9);
  const ticks = Array.from({ length: intervals + 1 }, (_, k) => Number((k * step).toPrecision(12)));
  return ticks.filter((v) => v <= cap * (1 + 1e-9));
}

// Tick labels with as many decimals as the step needs (0, 2.5, 5 -> one decimal), times `scale`.
function tickFormat(ticks, scale = 1, suffix = "") {
  const step = scale * (ticks.length > 1 ? ticks[1] - ticks[0] : 1);
  const digits = [0, 1, 2, 3].find((d) => Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) < 1e-6) ?? 3;
  return (v) => `${(scale * v).toFixed(digits)}${suffix}`;
}

// The left margin (SVG units) that the longest tick label needs, measured in the page's font:
// a fixed 44 cut the first digit off "110.0 %" and "171,723".
function axisMargin(ticks, format) {
  const context = document.createElement("canvas").getContext("2d");
  const style = getComputedStyle(document.body);
  context.font = `${AXIS_FONT_PX}px ${style.fontFamily}`;
  const widest = Math.max(...ticks.map((v) => context.measureText(format(v)).width));
  return Math.ceil(widest) + AXIS_GAP + 4;
}

function yAxis(svg, { ticks, y, L, right, format }) {
  for (const v of ticks) {
    svg.append(sv("line", { x1: L, x2: right, y1: y(v), y2: y(v), stroke: "#e3e7ef" }));
    svg.append(sv("text", { x: L - AXIS_GAP, y: y(v) + 4, "text-anchor": "end", class: "y-tick" }, format(v)));
  }
}

// --------------------------------------------------------------------------------------- charts

// Line chart: series [{name, color, values: [y or null per x]}], xLabels: strings.
function lineChart({ series, xLabels, yMax = null, thresholds = [], height = 220 }) {
  const all = series.flatMap((s) => s.values).filter((v) => v != null);
  const ticks = niceTicks(yMax ?? Math.max(0.1, ...all, ...thresholds.map((t) => t.y)));
  const yFormat = tickFormat(ticks);
  const W = 560, H = height, L = axisMargin(ticks, yFormat), R = 28, T = 12, B = 34;
  const top = ticks.at(-1);
  const x = (i) => L + (xLabels.length <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (xLabels.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  yAxis(svg, { ticks, y, L, right: W - R, format: yFormat });
  const step = Math.max(1, Math.ceil(xLabels.length / 8));
  xLabels.forEach((label, i) => {
    if (i % step === 0 || i === xLabels.length - 1) {
      const anchor = xLabels.length > 1 && i === 0 ? "start" : i === xLabels.length - 1 && i > 0 ? "end" : "middle";
      svg.append(sv("text", { x: x(i), y: H - 12, "text-anchor": anchor }, label));
    }
  });
  for (const t of thresholds) {
    svg.append(sv("line", { x1: L, x2: W - R, y1: y(t.y), y2: y(t.y), stroke: "#d64545", "stroke-dasharray": "5 4" }));
    svg.append(sv("text", { x: W - R, y: y(t.y) - 4, "text-anchor": "end", fill: "#d64545" }, t.label));
  }
  for (const s of series) {
    const points = s.values.map((v, i) => (v == null ? null : [x(i), y(v)])).filter(Boolean);
    if (points.length > 1) {
      svg.append(sv("polyline", { points: points.map((p) => p.join(",")).join(" "), fill: "none",
        stroke: s.color, "stroke-width": 2.2, "stroke-dasharray": s.dash || "" }));
    }
    s.values.forEach((v, i) => {
      if (v == null) return;
      const dot = sv("circle", { cx: x(i), cy: y(v), r: 3.2, fill: s.color });
      dot.append(sv("title", {}, `${s.name} · ${xLabels[i]}: ${fmt(v)}`));
      svg.append(dot);
    });
  }
  return svg;
}

// Bar chart of one or more aligned series (grouped bars), values as shares.
function barChart({ groups, labels, height = 220 }) {
  const ticks = niceTicks(Math.max(0.01, ...groups.flatMap((g) => g.values)), { cap: 1 });
  const yFormat = tickFormat(ticks, 100, " %");
  const W = 560, H = height, L = axisMargin(ticks, yFormat), R = 10, T = 10, B = 30;
  const top = ticks.at(-1);
  const slot = (W - L - R) / labels.length;
  const barW = Math.max(2, (slot * 0.8) / groups.length);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  yAxis(svg, { ticks, y, L, right: W - R, format: yFormat });
  const step = Math.max(1, Math.ceil(labels.length / 10));
  labels.forEach((label, i) => {
    if (i % step === 0) svg.append(sv("text", { x: L + slot * i + slot / 2, y: H - 10, "text-anchor": "middle" }, label));
  });
  groups.forEach((g, gi) => {
    g.values.forEach((v, i) => {
      const bx = L + slot * i + slot * 0.1 + gi * barW;
      const bar = sv("rect", { x: bx, y: y(v), width: barW - 1, height: Math.max(0, y(0) - y(v)), fill: g.color, rx: 1.5 });
      bar.append(sv("title", {}, `${g.name} · ${labels[i]}: ${pct(v)}`));
      svg.append(bar);
    });
  });
  return svg;
}

// Stacked bars: buckets (x labels) x series; counts.
function stackedBars({ buckets, series, height = 220 }) {
  const totals = buckets.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const ticks = niceTicks(Math.max(1, ...totals), { integer: true });
  const yFormat = (v) => v.toLocaleString("en");
  const W = 560, H = height, L = axisMargin(ticks, yFormat), R = 10, T = 10, B = 30;
  const top = ticks.at(-1);
  const slot = (W - L - R) / Math.max(1, buckets.length);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  yAxis(svg, { ticks, y, L, right: W - R, format: yFormat });
  const step = Math.max(1, Math.ceil(buckets.length / 6));
  buckets.forEach((label, i) => {
    if (i % step === 0) svg.append(sv("text", { x: L + slot * i + slot / 2, y: H - 10, "text-anchor": "middle" }, label));
    let base = 0;
    for (const s of series) {
      const v = s.values[i] || 0;
      if (!v) continue;
      const rect = sv("rect", { x: L + slot * i + slot * 0.15, y: y(base + v), width: Math.max(2, slot * 0.7),
        height: y(base) - y(base + v), fill: s.color });
      rect.append(sv("title", {}, `version ${s.name} · ${label}: ${v.toLocaleString("en")} rows`));
      svg.append(rect);
      base += v;
    }
  });
  return svg;
}

// Heat map: rows (features) x columns (runs); score -> colour, the drift job's drifted features outlined.
function heatmap({ rows, columns, cell, drifted, scale }) {
  const cw = Math.max(18, Math.min(84, 900 / Math.max(1, columns.length)));
  const ch = 18, L = 110, T = 8, B = 40;
  const W = L + cw * columns.length + 10, H = T + ch * rows.length + B;
  const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  svg.style.maxWidth = `${W * 1.25}px`;
  const colour = (v) => {
    if (v == null) return "#f0f0f0";
    const t = Math.min(1, v / scale);
    const hue = 130 - 130 * t; // green -> red
    return `hsl(${hue}, 65%, ${92 - 40 * t}%)`;
  };
  rows.forEach((name, r) => {
    svg.append(sv("text", { x: L - 8, y: T + r * ch + 13, "text-anchor": "end", class: "feature" }, name));
    columns.forEach((column, c) => {
      const v = cell(name, c);
      const hit = drifted(name, c);
      const rect = sv("rect", { x: L + c * cw, y: T + r * ch, width: cw - 2, height: ch - 2, rx: 2, fill: colour(v),
        stroke: hit ? "#8b1e1e" : "none", "stroke-width": 1.5 });
      rect.append(sv("title", {}, `${name} · ${column}: ${fmt(v)}${hit ? " (drifted)" : ""}`));
      svg.append(rect);
      if (cw >= 34 && v != null) {
        const strong = Math.min(1, v / scale) > 0.6;
        svg.append(sv("text", { x: L + c * cw + cw / 2 - 1, y: T + r * ch + 12, "text-anchor": "middle",
          fill: strong ? "#fff" : "#1d2433", "font-weight": hit ? 700 : 400 }, v.toFixed(2)));
      }
    });
  });
  const step = Math.max(1, Math.ceil(columns.length / 8));
  columns.forEach((column, c) => {
    if (c % step === 0 || c === columns.length - 1) {
      svg.append(sv("text", { x: L + c * cw + cw / 2, y: H - 22, "text-anchor": "middle" }, column));
    }
  });
  return svg;
}

function table(headers, rows) {
  return el("table", {}, [
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) =>
      c instanceof Node ? el("td", {}, c) : el("td", { text: c ?? "–", class: typeof c === "number" ? "num" : "" }))))),
  ]);
}

function pill(text) {
  return el("span", { class: `pill ${text || ""}`, text: text || "–" });
}

// ----------------------------------------------------------------------------------------- panels

// Drift and estimates are per model (issue #25): the seed's /predict traffic and the report-time
// model's /v2/predict traffic each have their own panels (?model=...), never mixed (both models
// number their versions from 1).
const MONITORED = [
  { model: "seed", drift: ["drift-features", "drift-share"], estimated: "estimated", option: "" },
  { model: "report_time", drift: ["report-time-drift-features", "report-time-drift-share"],
    estimated: "report-time-estimated", option: " --model report_time" },
];

async function drawDrift({ model, drift: [featuresPanel, sharePanel], option }) {
  let runs;
  try {
    runs = await api(`/monitoring/drift?limit=30&model=${model}`);
  } catch (error) {
    const message = error.status === 404 ? "drift monitoring is not available on this API" : `drift: ${error.message}`;
    for (const name of [featuresPanel, sharePanel]) {
      if (error.status === 404) empty(name, message); else setPanel(name, "error", el("div", { class: "error", text: message }));
    }
    return;
  }
  if (!runs.length) {
    empty(featuresPanel, `no drift run yet (python -m accidents.monitoring.drift${option}, or the monitoring DAG)`);
    empty(sharePanel, "no drift run yet");
    return;
  }
  const ordered = [...runs].reverse(); // oldest first
  const oneDay = new Set(ordered.map((run) => run.computed_at.slice(0, 10))).size === 1;
  const columns = ordered.map((run) => (oneDay ? new Date(run.computed_at).toISOString().slice(11, 19)
    : shortTime(run.computed_at)));
  const features = [...new Set(ordered.flatMap((run) => Object.keys(run.feature_scores || {})))];
  const maxScore = (f) => Math.max(...ordered.map((run) => (run.feature_scores || {})[f] ?? 0));
  features.sort((a, b) => maxScore(b) - maxScore(a));
  const latest = runs[0];
  const summary = el("div", { class: "stats" }, [
    el("div", {}, [el("b", {}, pill(latest.verdict)), "latest verdict"]),
    el("div", {}, [el("b", { text: (latest.drifted_features || []).join(", ") || "none" }), "drifted features"]),
    el("div", {}, [el("b", { text: (latest.window_rows ?? 0).toLocaleString("en") }), "rows in window"]),
    el("div", {}, [el("b", { text: latest.model_version ?? "–" }), "model version"]),
  ]);
  setPanel(featuresPanel, "ready", [
    summary,
    heatmap({ rows: features, columns, scale: 0.2, cell: (f, c) => (ordered[c].feature_scores || {})[f] ?? null,
      drifted: (f, c) => (ordered[c].drifted_features || []).includes(f) }),
    el("div", { class: "legend", text: "columns: drift runs, oldest to newest; cell: the feature's drift score above "
      + "the noise floor (green 0 → red ≥ 0.2); dark border, bold: drifted in that run" }),
  ], runs.length);
  const series = [
    { name: "drifted share", color: PALETTE[0], values: ordered.map((run) => run.drifted_share) },
    { name: "prediction drift", color: PALETTE[1], values: ordered.map((run) => run.prediction_drift), dash: "6 3" },
  ];
  setPanel(sharePanel, "ready", [
    lineChart({ series, xLabels: columns, yMax: 1 }),
    coloredLegend(series.map((s) => [s.name, s.color])),
    table(["run", "verdict", "drifted share", "prediction drift", "rows"], runs.slice(0, 5).map((run, i) => [
      columns[columns.length - 1 - i], pill(run.verdict), pct(run.drifted_share), fmt(run.prediction_drift),
      run.window_rows,
    ])),
  ], runs.length);
}

async function drawPredictions() {
  const stats = await api("/monitoring/prediction-stats?bins=20&bucket=hour");
  if (!stats.rows) {
    empty("prediction-distribution", "no prediction logged in the last 30 days");
    empty("volume", "no prediction logged in the last 30 days");
    return;
  }
  const labels = Array.from({ length: stats.bins }, (_, i) => (i / stats.bins).toFixed(2));
  const groups = stats.versions.slice(0, 4).map((v, i) => ({
    name: `version ${v.model_version ?? "?"}`, color: colorFor(i), values: v.histogram.map((n) => n / v.rows),
  }));
  setPanel("prediction-distribution", "ready", [
    el("div", { class: "stats" }, [
      el("div", {}, [el("b", { text: stats.rows.toLocaleString("en") }), "predictions"]),
      el("div", {}, [el("b", { text: pct(stats.versions.reduce((s, v) => s + v.predicted_positive, 0) / stats.rows) }),
        "predicted severe"]),
      el("div", {}, [el("b", { text: fmt(stats.versions[0].mean_probability) }), "mean probability"]),
    ]),
    barChart({ groups, labels }),
    coloredLegend(groups.map((g) => [`${g.name} (share of its rows per probability bin)`, g.color])),
  ], stats.rows);

  const versions = stats.versions.map((v) => v.model_version);
  const buckets = [...new Set(stats.volume.map((b) => b.bucket))];
  const series = versions.map((version, i) => ({
    name: version ?? "?", color: colorFor(i),
    values: buckets.map((bucket) => stats.volume.filter((b) => b.bucket === bucket && b.model_version === version)
      .reduce((sum, b) => sum + b.rows, 0)),
  }));
  setPanel("volume", "ready", [
    stackedBars({ buckets: buckets.map((b) => b.slice(5)), series }),
    coloredLegend(stats.versions.map((v, i) =>
      [`version ${v.model_version ?? "?"}: ${v.rows.toLocaleString("en")} rows, ${pct(v.predicted_positive / v.rows)} severe`,
        colorFor(i)])),
  ], stats.rows);
}

async function drawRealized() {
  const rows = await api("/monitoring/performance");
  const monthly = rows.filter((r) => r.month);
  if (!monthly.length) {
    empty("realized", "no realized performance yet (python -m accidents.monitoring.realized joins labels once published)");
    return;
  }
  const months = [...new Set(monthly.map((r) => r.month))].sort();
  const versions = [...new Set(monthly.map((r) => r.model_version))];
  const series = versions.flatMap((version, i) => ["roc_auc", "f1"].map((metric) => ({
    name: `v${version} ${metric === "roc_auc" ? "AUC" : "F1 (dashed)"}`, color: colorFor(i), dash: metric === "f1" ? "6 3" : "",
    values: months.map((m) => (monthly.find((r) => r.model_version === version && r.month === m) || {})[metric] ?? null),
  })));
  const overall = rows.filter((r) => !r.month);
  setPanel("realized", "ready", [
    lineChart({ series, xLabels: months, yMax: 1 }),
    coloredLegend(series.map((s) => [s.name, s.color])),
    table(["version", "labelled rows", "AUC", "F1", "precision", "recall"], overall.map((r) => [
      r.model_version, r.rows_labelled, fmt(r.roc_auc), fmt(r.f1), fmt(r.precision), fmt(r.recall),
    ])),
  ], monthly.length);
}

async function drawRetrains() {
  const answer = await api("/monitoring/retrains?limit=15");
  const runs = answer.runs;
  if (!answer.available) {
    setPanel("retrains", "error", el("div", { class: "error", text: `retrains: ${answer.detail}` }));
    return;
  }
  if (!runs.length) { empty("retrains", "no pipeline run in MLflow yet"); return; }
  setPanel("retrains", "ready", table(
    ["started", "model", "status", "why it ran", "promotion", "test AUC", "test F1"],
    runs.map((run) => [shortTime(run.started_at), run.model, pill(run.status), run.reason || "–",
      el("span", {}, [pill(run.promotion), " ", run.promotion_reason || ""]), fmt(run.test_roc_auc), fmt(run.test_f1)]),
  ), runs.length);
}

async function drawShadow() {
  let data;
  try {
    data = await api("/monitoring/shadow");
  } catch (error) {
    if (error.status === 404) { empty("shadow", "no challenger"); return; }
    setPanel("shadow", "error", el("div", { class: "error", text: `shadow: ${error.message}` }));
    return;
  }
  const items = data;  // GET /monitoring/shadow: one row per challenger version, newest first
  if (!items.length) { empty("shadow", "no challenger"); return; }
  const grade = (item, side, metric) => fmt(((item.realized || {})[side] || {})[metric]);
  setPanel("shadow", "ready", table(
    ["challenger", "vs champion", "shadow rows", "agreement", "severe: challenger", "severe: champion", "difference",
      "realized AUC (chall. / champ.)", "last row"],
    items.map((item) => [item.challenger_version ?? "–", item.champion_version ?? "–", item.rows,
      pct(item.agreement_rate), pct(item.challenger_positive_rate), pct(item.champion_positive_rate),
      `${item.positive_rate_difference >= 0 ? "+" : ""}${(100 * item.positive_rate_difference).toFixed(1)} pt`,
      `${grade(item, "challenger", "roc_auc")} / ${grade(item, "champion", "roc_auc")}`, shortTime(item.last_logged_at)]),
  ), items.length);
}

// ------------------------------------------------------------------ estimated vs realized performance

// The estimation job's windows (CBPE, before labels), oldest to newest: estimated AUC and F1 per
// version, the realized values of the same window once the label job graded it, and the error.
async function drawEstimated({ model, estimated: name, option }) {
  let rows;
  try {
    rows = await api(`/monitoring/estimates?limit=30&model=${model}`);
  } catch (error) {
    if (error.status === 404) { empty(name, "estimated performance is not available on this API"); return; }
    throw error;
  }
  if (!rows.length) {
    empty(name, `no estimate yet (accidents estimate${option}, or the monitoring DAG's estimate task)`);
    return;
  }
  const ordered = [...rows].reverse();  // oldest first
  const windows = ordered.map((r) => shortTime(r.window_end || r.computed_at));
  const versions = [...new Set(ordered.map((r) => r.model_version ?? "?"))];
  const series = versions.flatMap((version, i) => [
    ["roc_auc", "estimated AUC", ""], ["realized_auc", "realized AUC (dashed)", "6 3"],
  ].map(([key, label, dash]) => ({
    name: `v${version} ${label}`, color: colorFor(i), dash,
    values: ordered.map((r) => ((r.model_version ?? "?") === version ? r[key] : null)),
  })));
  const graded = rows.filter((r) => r.auc_error != null);
  const error = (v) => (v == null ? "–" : `${v >= 0 ? "+" : ""}${v.toFixed(4)}`);
  const chart = lineChart({ series, xLabels: windows, yMax: 1 });
  chart.style.maxWidth = "760px";  // a wide card: the table needs the width, the chart does not
  setPanel(name, "ready", [
    el("div", { class: "stats" }, [
      el("div", {}, [el("b", { text: fmt(rows[0].roc_auc) }), `estimated AUC, version ${rows[0].model_version ?? "?"}`]),
      el("div", {}, [el("b", { text: fmt(rows[0].f1) }), "estimated F1"]),
      el("div", {}, [el("b", { text: graded.length ? error(graded[0].auc_error) : "–" }),
        "AUC error of the newest graded window"]),
    ]),
    chart,
    coloredLegend(series.map((s) => [s.name, s.color])),
    table(["window end", "version", "rows", "est. AUC", "realized AUC", "AUC error", "est. F1", "realized F1",
      "F1 error", "calibration ECE (raw → isotonic)"], rows.slice(0, 10).map((r) => [
      shortTime(r.window_end), r.model_version ?? "–", r.window_rows, fmt(r.roc_auc, 4), fmt(r.realized_auc, 4),
      error(r.auc_error), fmt(r.f1, 4), fmt(r.realized_f1, 4), error(r.f1_error),
      `${fmt(r.calibration_ece_raw)} → ${fmt(r.calibration_ece_isotonic)}`,
    ])),
  ], rows.length);
}

// ------------------------------------------------------------------------------ received alerts
// What Alertmanager delivered to POST /monitoring/alerts: one row per alert (fingerprint), firing
// first; a resolved alert stays listed with its end.

async function drawReceivedAlerts() {
  const alerts = await api("/monitoring/alerts?limit=50");
  if (!alerts.length) { empty("alerts", "no alert received from Alertmanager"); return; }
  const firing = alerts.filter((a) => a.status === "firing").length;
  const scope = (a) => Object.entries(a.labels).filter(([k]) => !["alertname", "severity"].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(", ");
  setPanel("alerts", "ready", [
    el("div", { class: "stats" }, [
      el("div", {}, [el("b", { text: String(firing) }), "firing"]),
      el("div", {}, [el("b", { text: String(alerts.length - firing) }), "resolved"]),
    ]),
    table(["alert", "status", "severity", "summary", "labels", "since", "resolved at", "last notified"],
      alerts.map((a) => [a.alertname, pill(a.status), a.severity || "–", a.annotations.summary || "–", scope(a),
        shortTime(a.starts_at), a.ends_at ? shortTime(a.ends_at) : "–", shortTime(a.last_received_at)])),
  ], alerts.length);
  const card = panel("alerts");
  card.dataset.firing = alerts.filter((a) => a.status === "firing").map((a) => a.alertname).join(",");
  card.dataset.resolved = alerts.filter((a) => a.status === "resolved").map((a) => a.alertname).join(",");
}

async function drawModel() {
  const badge = document.getElementById("model-badge");
  try {
    const model = await api("/model");
    badge.textContent = `serving version ${model.version ?? "?"} (${model.source}${model.degraded ? ", degraded" : ""})`;
    badge.className = model.synthetic || model.degraded ? "badge bad" : "badge";
  } catch (error) {
    badge.textContent = error.status === 503 ? "no model loaded" : `model: ${error.message}`;
    badge.className = "badge bad";
  }
}

async function refresh() {
  const jobs = { model: drawModel, predictions: drawPredictions, realized: drawRealized,
    retrains: drawRetrains, shadow: drawShadow, alerts: drawReceivedAlerts };
  const names = { predictions: ["prediction-distribution", "volume"], realized: ["realized"], retrains: ["retrains"],
    alerts: ["alerts"] };
  for (const monitored of MONITORED) {  // each model's drift and estimated vs realized performance
    jobs[`drift-${monitored.model}`] = () => drawDrift(monitored);
    names[`drift-${monitored.model}`] = monitored.drift;
    jobs[`estimated-${monitored.model}`] = () => drawEstimated(monitored);
    names[`estimated-${monitored.model}`] = [monitored.estimated];
  }
  await Promise.all(Object.entries(jobs).map(async ([job, draw]) => {
    try {
      await draw();
    } catch (error) {
      if (error.status === 401) return;
      const forbidden = error.status === 403 ? "admins only: sign in as an admin" : error.message;
      for (const name of names[job] || []) setPanel(name, "error", el("div", { class: "error", text: forbidden }));
    }
  }));
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  document.body.dataset.loaded = "true";
}

// ------------------------------------------------------------------------------------ sign in/out

function showPanels(signedIn) {
  document.getElementById("login").hidden = signedIn;
  document.getElementById("panels").hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(refreshTimer);
  showPanels(false);
  document.getElementById("model-badge").textContent = "not signed in";
  document.getElementById("login-error").textContent = message;
}

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const error = document.getElementById("login-error");
  error.textContent = "";
  const response = await fetch("/auth/token", { method: "POST", body: new URLSearchParams(form) });
  if (!response.ok) {
    error.textContent = response.status === 401 ? "wrong username or password" : `sign-in failed (${response.status})`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, (await response.json()).access_token);
  start();
}

function start() {
  showPanels(true);
  refresh();
  clearInterval(refreshTimer);
  refreshTimer = setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", signIn);
  document.getElementById("logout").addEventListener("click", () => signOut());
  if (sessionStorage.getItem(TOKEN_KEY)) start();
});

/* qosinspect HTML report: renders the payload that qosinspect/report/html/payload.py embeds.
 *
 * Everything the page needs is in the file: plotly.js (the plotly Python package's offline
 * bundle) and the data, both gzip-compressed and base64-encoded in <script> elements and
 * inflated by the browser's own DecompressionStream; nothing is fetched.
 *
 * The sections follow the text report (qosinspect/report/text.py) in its order and with its
 * numbers (they come from the report dict, the one `report --format json` writes); then the
 * exchanges (exchanges.js) and the ladder (ladder.js), whose scripts come first in the page.
 * Text from the capture (client ids, topics, details) is only ever set as textContent.
 */
"use strict";

const NS_SVG = "http://www.w3.org/2000/svg";
const QOS_COLORS = {0: "#7f7f7f", 1: "#1f77b4", 2: "#d62728"};
const END_COLORS = {disconnect: "#2ca02c", fin: "#1f77b4", rst: "#d62728",
  keepalive_expired: "#ff7f0e", taken_over: "#9467bd", idle: "#8c564b", reused: "#8c564b",
  end_of_capture: "#7f7f7f"};
const STEP_NAMES = {puback: "PUBLISH -> PUBACK", pubrec: "PUBLISH -> PUBREC",
  pubrel: "PUBREC -> PUBREL", pubcomp: "PUBREL -> PUBCOMP", total: "PUBLISH -> final ack"};
const LADDER_MAX_ROWS = 3000;
/* Sampled points of the latency-over-time chart besides every outlier and notable exchange:
 * WebGL draws tens of thousands at once, SVG (without WebGL, e.g. a headless Firefox) about
 * ten times fewer in the same time. */
const SCATTER_SAMPLE = 20000;
const SCATTER_SAMPLE_SVG = 2000;
const ROW_H = 24;

/* -- small helpers ------------------------------------------------------------------------ */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, text) {
  const el = document.createElementNS(NS_SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/* A value as the text report's cells show it: missing "-", floats with three decimals. */
function cell(v) {
  if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) return "-";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(3);
  return String(v);
}

function num(v) { return v === null || v === undefined ? "-" : v.toLocaleString("en-US"); }

/* A frame number that copies itself as a Wireshark display filter when clicked. */
function frameLink(n) {
  if (n === null || n === undefined) return "-";
  return h("span", {class: "frame", "data-frame": n, title: `copy: frame.number == ${n}`,
    tabindex: 0}, String(n));
}

function table(headers, rows, opts) {
  const o = opts || {};
  const align = o.align || "";
  const head = h("tr", {}, headers.map((t, i) =>
    h("th", {class: align[i] === "l" ? "l" : null}, t)));
  const body = rows.map((r, ri) => h("tr", o.rowAttrs ? o.rowAttrs(ri) : {}, r.map((v, i) => {
    const attrs = o.cellAttrs ? o.cellAttrs(ri, i) : {};
    if (align[i] === "l") attrs.class = ((attrs.class || "") + " l").trim();
    return h("td", attrs, v instanceof Node ? v : cell(v));
  })));
  return h("table", {class: "grid", id: o.id || null}, h("thead", {}, head), h("tbody", {}, body));
}

function details(text) { return h("p", {class: "details"}, "details: ", h("code", {}, text)); }

function section(id, title, ...children) {
  return h("section", {id}, h("h2", {}, title), ...children);
}

/* A column-oriented table of the payload: value i of column name, dictionary codes decoded. */
function col(tab, name) {
  const values = tab.cols[name];
  const dict = tab.dicts[name];
  if (!values) return () => null;
  if (!dict) return (i) => values[i];
  return (i) => (values[i] < 0 ? null : dict[values[i]]);
}

function seconds(ns) { return ns === null || ns === undefined ? null : ns / 1e9; }

/* Copy text to the clipboard: the selection way first (synchronous inside the click, works
 * from file:// everywhere), the asynchronous Clipboard API where that is refused. The toast
 * says what happened; where both fail it shows the text to copy by hand. */
function copyText(text) {
  const area = h("textarea", {class: "offscreen", readonly: true});
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; } finally { area.remove(); }
  if (ok) { toast(`copied: ${text}`); return; }
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).then(() => toast(`copied: ${text}`),
      () => toast(`copy this: ${text}`));
  } else {
    toast(`copy this: ${text}`);
  }
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 1600);
}

/* -- loading -------------------------------------------------------------------------------- */

/* The bytes of a packed <script> element (gzip, then base64), inflated by the browser.
 * Uint8Array.fromBase64 (Chromium 140+, Firefox 133+) decodes in native code; the loop over
 * atob's string is the fallback (about 0.1 s for plotly.js's 2.7 MB of base64). */
function inflated(id) {
  const text = document.getElementById(id).textContent.trim();
  let bytes;
  if (Uint8Array.fromBase64) {
    bytes = Uint8Array.fromBase64(text);
  } else {
    const bin = atob(text);
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  }
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip")));
}

/* plotly.js as a script of its own: a blob: URL, so the browser compiles it off the main
 * thread while the report's text is drawn. The magic comment (V8's explicit compile hints,
 * Chromium 136+; a comment elsewhere) asks for every function to be compiled there: the
 * bundle's code sits in one function that V8 would otherwise compile on the main thread when
 * it runs (about 0.3 s of the main thread, profiled). The bundle itself is untouched.
 * Returns a promise that resolves once the script element is in the page, with the promise
 * that resolves once plotly.js has run. */
const COMPILE_HINT = "//# allFunctionsCalledOnLoad\n";

async function startPlotly() {
  const blob = await inflated("plotly-gz").blob();
  const url = URL.createObjectURL(new Blob([COMPILE_HINT, blob], {type: "text/javascript"}));
  const lib = document.createElement("script");
  const loaded = new Promise((resolve, reject) => {
    lib.onload = resolve;
    lib.onerror = () => reject(new Error("plotly.js could not be loaded"));
  }).finally(() => URL.revokeObjectURL(url));
  lib.src = url;
  document.head.append(lib);
  return {loaded};
}

/* The report's text and tables first (what a reader looks at first), then plotly.js, then
 * the charts in view (charts.js: the others as they come into view). plotly.js is handed to
 * the browser before the text is drawn, so that its compilation runs beside it. <body> gets
 * data-ready="text", then "1" once the charts in view are drawn; data-timing holds the ms
 * since navigation start of each step. */
async function main() {
  const plotly = startPlotly();
  const data = inflated("data-gz").json();
  const {loaded} = await plotly;
  const D = await data;
  for (const tab of Object.values(D)) {
    for (const name of (tab && tab.delta) || []) {        // payload.py's delta columns
      const v = tab.cols[name];
      for (let i = 1; i < v.length; i++) v[i] += v[i - 1];
    }
  }
  window.qosinspectData = D;          // for a user's console and for the browser tests
  render(D);
  await nextPaint();
  const text = performance.now();
  document.body.dataset.ready = "text";
  await loaded;
  const lib = performance.now();
  await Charts.start();
  const charts = performance.now();
  document.body.dataset.timing = JSON.stringify({text, plotly: lib, charts,
    first_chart: Charts.times.length ? Charts.times[0][1] : null,
    charts_in_view: Charts.times.length, charts_painted: Charts.painted});
  document.body.dataset.ready = "1";
}

/* -- the report ------------------------------------------------------------------------------ */

function render(D) {
  const R = D.report;
  const app = document.getElementById("app");
  app.textContent = "";
  app.append(header(D, R), qosSection(D, R), latencySection(D, R), outcomesSection(D, R),
    connectionsSection(D, R), tcpSection(D, R), diagnosesSection(D, R), clearTextSection(D, R),
    anomaliesSection(D, R),
    exchangesSection(D), ladderSection(D));
  Exchanges.init(D);
  Ladder.init(D);
  document.addEventListener("click", (e) => {
    const f = e.target.closest && e.target.closest(".frame");
    if (f) { copyText(`frame.number == ${f.dataset.frame}`); e.stopPropagation(); }
  }, true);
  document.addEventListener("keydown", (e) => {
    const f = e.target.closest && e.target.closest(".frame");
    if (f && e.key === "Enter") copyText(`frame.number == ${f.dataset.frame}`);
  });
}

function header(D, R) {
  const cap = R.capture;
  const facts = [];
  if (cap.frames !== undefined) {
    facts.push(`${num(cap.frames)} frames, ${num(cap.mqtt_packets)} MQTT packets`);
  }
  facts.push(`${R.connections} connections, ${R.sessions} sessions`);
  if (R.brokers.length > 1) facts.push(`${R.brokers.length} brokers`);
  if (cap.duration_s !== null && cap.duration_s !== undefined) {
    facts.push(`${cap.duration_s.toFixed(3)} s from ${D.t0_iso}`);
  }
  const out = h("header", {id: "top"},
    h("h1", {}, `qosinspect report: ${cap.source || "events"}`),
    h("p", {id: "facts"}, facts.join(", ")));
  if (cap.error) out.append(h("p", {class: "warn"}, `WARNING: the capture could not be read to the end: ${cap.error}`));
  if (R.notes && R.notes.encrypted) {
    out.append(h("p", {class: "note"}, `NOTE: ${R.notes.encrypted} connection(s) encrypted ` +
      "(TLS): no MQTT decoded there; --engine tshark --tls-keylog FILE decrypts them"));
  }
  if (cap.frames && !R.connections) {
    out.append(h("p", {class: "note"}, "NOTE: no MQTT connection in this capture: MQTT is " +
      "looked for on port 1883, on the ports given with --port, and on any port whose stream " +
      "starts with a CONNECT or an MQTT WebSocket upgrade"));
  }
  const links = [["sec-qos", "Per QoS"], ["sec-latency", "Latency"], ["sec-outcomes", "Outcomes"],
    ["sec-connections", "Connections"], ["sec-tcp", "TCP"], ["sec-diagnoses", "Diagnoses"],
    ["sec-cleartext", "Clear text"],
    ["sec-anomalies", "Anomalies"], ["sec-exchanges", "Exchanges"], ["sec-ladder", "Ladder"]];
  out.append(h("nav", {}, links.map(([id, t]) => h("a", {href: `#${id}`}, t))));
  out.append(h("p", {class: "hint"}, "Click a frame number to copy it as a Wireshark display " +
    "filter (frame.number == N)."));
  return out;
}

const QOS_FIELDS = [["QoS", "qos"], ["publishes", "publishes"], ["completed", "completed"],
  ["incomplete", "incomplete"], ["retrans", "retransmissions"], ["DUP", "dup_flagged"],
  ["dup delivered", "duplicates_delivered"], ["not delivered", "not_delivered"],
  ["p50 ms", "p50"], ["p90 ms", "p90"], ["p99 ms", "p99"], ["max ms", "max"]];

function qosTable(perQos, id) {
  const value = (r, key) => (key in r.latency_ms ? r.latency_ms[key] : r[key]);
  return table(QOS_FIELDS.map((f) => f[0]), perQos.map((r) => QOS_FIELDS.map((f) => value(r, f[1]))),
    {id, cellAttrs: (ri, i) => ({"data-qos": perQos[ri].qos, "data-field": QOS_FIELDS[i][1]})});
}

function qosSection(D, R) {
  const out = section("sec-qos", "Per QoS level", qosTable(R.per_qos, "qos-table"));
  if (R.brokers.length > 1) {
    for (const b of R.brokers) {
      const ep = b.address.includes(":") ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`;
      out.append(h("h3", {}, `broker ${ep}: ${b.connections} connections (--broker ${ep} for this broker alone)`),
        qosTable(b.per_qos, null));
    }
  }
  out.append(h("p", {class: "hint"}, "publishes count exchanges (a re-sent PUBLISH is not a new " +
    "one); retrans: MQTT-level re-sends (PUBLISH, PUBREC, PUBREL); DUP: PUBLISH packets with " +
    "DUP=1; latency: first PUBLISH to final ack of completed exchanges."));
  return out;
}

function latencySection(D, R) {
  const rows = [];
  for (const r of R.per_qos) {
    for (const [step, p] of Object.entries(r.latency_ms_by_step)) {
      rows.push([`QoS ${r.qos}`, STEP_NAMES[step], p.p50, p.p90, p.p99, p.max]);
    }
  }
  for (const w of R.time_on_wire_ms || []) {   // as report/diagnoses.py wire_rows words it
    rows.push([`QoS ${w.qos}`, `time on the wire (${w.packets} packets in pieces)`, w.p50, w.p90,
      w.p99, w.max]);
  }
  const out = section("sec-latency", "Latency per step (ms)",
    table(["QoS", "step", "p50", "p90", "p99", "max"], rows, {id: "step-table", align: "ll"}));
  for (const q of D.latency) out.append(Charts.add(`latency-q${q.qos}`, 300, (el) => drawHistogram(el, q)));
  const sample = hasWebGL() ? SCATTER_SAMPLE : SCATTER_SAMPLE_SVG;
  out.append(h("p", {class: "hint"}, "Counts of every exchange per logarithmic latency bin " +
    "(drag to zoom, double-click to reset). Below: latency of each exchange over the capture " +
    "(every outlier and every exchange that did not simply complete, an even sample of the " +
    `rest, ${num(sample)} points at most); click a point for its ladder.`));
  const traces = latencyTimeTraces(D, sample);
  if (traces.length) out.append(Charts.add("latency-time", 320, (el) => drawLatencyTime(el, traces)));
  return out;
}

function drawHistogram(el, q) {
  const edges = q.edges_ms;
  const traces = q.steps.map((s) => ({
    type: "scatter", mode: "lines",
    line: {shape: "hv", width: 1.5, dash: s.step === "total" ? "dot" : "solid"},
    name: `${STEP_NAMES[s.step]} (${num(s.n)})`,
    x: edges, y: [...s.counts, s.counts[s.counts.length - 1] || 0],
    hovertemplate: "%{x:.4g} ms: %{y} exchanges<extra>%{fullData.name}</extra>",
  }));
  Plotly.newPlot(el, traces, {
    title: {text: `QoS ${q.qos}: latency per step`}, height: 300,
    margin: {l: 60, r: 20, t: 40, b: 45},
    xaxis: {type: "log", title: {text: "ms (log scale)"}},
    yaxis: {title: {text: "exchanges"}, rangemode: "tozero"}, legend: {orientation: "h"},
  }, {displaylogo: false, responsive: true});
}

/* The points of the latency-over-time chart: every outlier and notable exchange; of the even
 * sample, at most `sample` points. */
function latencyTimeTraces(D, sample) {
  const X = D.exchanges;
  const lat = col(X, "latency_ms"), t = col(X, "t_publish"), qos = col(X, "qos"),
    kept = col(X, "kept");
  let sampled = 0;
  for (let i = 0; i < X.n; i++) if (kept(i) === 0) sampled++;
  const stride = Math.max(1, Math.ceil(sampled / sample));
  const traces = [];
  for (const q of [1, 2]) {
    const xs = [], ys = [], idx = [];
    let k = 0;
    for (let i = 0; i < X.n; i++) {
      if (qos(i) !== q || lat(i) === null || !(lat(i) > 0)) continue;
      if (kept(i) === 0 && k++ % stride !== 0) continue;
      xs.push(t(i) / 1e9); ys.push(lat(i)); idx.push(i);
    }
    if (xs.length) {
      traces.push({type: "scattergl", mode: "markers", name: `QoS ${q}`, x: xs, y: ys,
        customdata: idx, marker: {size: 4, color: QOS_COLORS[q]},
        hovertemplate: "t=%{x:.6f} s, %{y:.3f} ms<extra>%{fullData.name}</extra>"});
    }
  }
  return traces.concat(causeTraces(X));
}

/* The diagnosed exchanges (docs/diagnoses.md) drawn over the points, a ring per cause (every
 * one is in the page: the payload keeps them); a click opens its ladder as any point's. */
function causeTraces(X) {
  const lat = col(X, "latency_ms"), t = col(X, "t_publish"), cause = col(X, "cause");
  const by = new Map();
  for (let i = 0; i < X.n; i++) {
    const c = cause(i);
    if (c === null || lat(i) === null || !(lat(i) > 0)) continue;
    if (!by.has(c)) by.set(c, {xs: [], ys: [], idx: []});
    const g = by.get(c);
    g.xs.push(t(i) / 1e9); g.ys.push(lat(i)); g.idx.push(i);
  }
  return [...by].map(([c, g], k) => ({type: "scattergl", mode: "markers", name: `cause: ${c}`,
    x: g.xs, y: g.ys, customdata: g.idx,
    marker: {size: 10, symbol: "circle-open", line: {width: 2}, color: CAUSE_COLORS[k % CAUSE_COLORS.length]},
    hovertemplate: `t=%{x:.6f} s, %{y:.3f} ms<extra>${c}</extra>`}));
}

const CAUSE_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];

/* plotGlPixelRatio: plotly draws WebGL at twice the screen's resolution by default, four
 * times the pixels to fill and to copy to the page (about 0.15 s in software rendering,
 * profiled); the screen's own ratio is as sharp. */
function drawLatencyTime(el, traces) {
  const gl = hasWebGL();
  Plotly.newPlot(el, traces.map((tr) => (gl ? tr : {...tr, type: "scatter"})),
    {title: {text: "latency over the capture"}, height: 320,
      margin: {l: 60, r: 20, t: 40, b: 45},
      xaxis: {title: {text: "s since the capture start"}},
      yaxis: {type: "log", title: {text: "ms (log scale)"}}, legend: {orientation: "h"}},
    {displaylogo: false, responsive: true,
      plotGlPixelRatio: Math.min(4, Math.max(1, Math.round(window.devicePixelRatio || 1)))});
  el.on("plotly_click", (ev) => { if (ev.points.length) Ladder.showExchange(ev.points[0].customdata); });
}

function outcomesSection(D, R) {
  const q2 = R.qos2_incomplete;
  const rows = R.per_qos.slice(1).map((r) => [r.qos, r.completed - r.complete_after_reconnect,
    r.complete_after_reconnect, r.at_end_of_capture, r.abandoned, r.evicted, r.refused,
    r.protocol_error]);
  return section("sec-outcomes", "Outcomes",
    table(["QoS", "complete", "after reconnect", "open at end", "abandoned", "evicted", "refused",
      "protocol error"], rows, {id: "outcome-table"}),
    h("p", {}, `QoS 2 incomplete by last step: no response ${q2.no_response}, after PUBREC ` +
      `${q2.after_pubrec}, after PUBREL ${q2.after_pubrel}`),
    details(`qosinspect flows ${D.capture} --outcome incomplete (or abandoned, refused, ` +
      "protocol_error, complete_after_reconnect)"));
}

function connectionsSection(D, R) {
  const ends = Object.entries(R.connection_ends).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  const attempts = R.tcp_attempts_refused;
  const out = section("sec-connections", "Connections and reconnections",
    h("p", {}, `connections: ${R.connections} (${R.refused_connections} refused by CONNACK), ` +
      `${attempts} attempt${attempts === 1 ? "" : "s"} refused by TCP (ended by: ${ends})`));
  if (D.refusals.length) {
    out.append(table(["conn", "client", "broker", "refused"], D.refusals, {align: "rlll"}));
    const more = R.refused_connections + attempts - D.refusals.length;
    if (more > 0) out.append(h("p", {}, `... and ${more} more`));
  }
  const gap = R.reconnect_gap_ms, red = R.redelivered;
  if (R.reconnects) {
    out.append(h("p", {}, `reconnections: ${R.reconnects}, gap p50 ${cell(gap.p50)} ms, max ` +
      `${cell(gap.max)} ms; redelivered on the new connection: ${red.publish} PUBLISH (DUP), ` +
      `${red.pubrel} PUBREL; resumed ${red.resumed}, abandoned ${red.abandoned}`));
    const X = D.reconnects;
    const c = (n) => col(X, n);
    const [ses, prev, next, cause, g, sp, uc, ub, rp, rr, res, ab] = ["session", "prev_conn_id",
      "next_conn_id", "cause", "gap", "session_present", "unfinished_c2b", "unfinished_b2c",
      "redelivered_publish", "redelivered_pubrel", "resumed", "abandoned"].map(c);
    const rows = [];
    for (let i = 0; i < X.n; i++) {
      rows.push([ses(i), prev(i), next(i), cause(i), g(i) === null ? null : Math.round(g(i) / 1e3) / 1e3,
        sp(i), uc(i) + ub(i), rp(i), rr(i), res(i), ab(i)]);
    }
    out.append(h("div", {class: "scroll"}, table(["client", "from conn", "to conn", "cause",
      "gap ms", "session present", "left open", "redelivered PUBLISH", "redelivered PUBREL",
      "resumed", "abandoned"], rows, {id: "reconnect-table", align: "l"})));
    if (X.total > X.n) out.append(h("p", {}, `... and ${X.total - X.n} more`));
  } else {
    out.append(h("p", {}, "reconnections: 0"));
  }
  out.append(details(`qosinspect ladder ${D.capture} --client ID; qosinspect export ` +
    `${D.capture} -o DIR (connections, reconnects)`));
  out.append(h("p", {class: "hint"}, "Each client's connections over time, coloured by how " +
    "they ended; diamonds are reconnections (hover: gap, cause, session present, what was " +
    "redelivered). Click a connection for its ladder."));
  if (D.connections.n) {
    const rows = timelineRows(D);
    out.append(Charts.add("timeline", timelineHeight(rows.shown.length),
      (el) => drawTimeline(el, D, rows)));
  }
  return out;
}

/* The clients of the timeline: the 80 with most connections (a session, or a connection
 * without one), and how many there are. */
function timelineRows(D) {
  const C = D.connections;
  const ses = col(C, "session"), conn = col(C, "conn_id");
  const counts = new Map();
  for (let i = 0; i < C.n; i++) {
    const key = ses(i) || `conn:${conn(i)}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const shown = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a) || (a < b ? -1 : 1)).slice(0, 80);
  return {shown, clients: counts.size};
}

function timelineHeight(rows) { return Math.min(160 + 26 * rows, 2400); }

function drawTimeline(el, D, {shown, clients}) {
  const C = D.connections;
  const ses = col(C, "session"), open = col(C, "t_open"), close = col(C, "t_close"),
    end = col(C, "end"), conn = col(C, "conn_id"), sp = col(C, "session_present"),
    clean = col(C, "clean_start"), client = col(C, "client"), attempt = col(C, "attempt");
  const keep = new Set(shown);
  const byEnd = new Map();
  for (let i = 0; i < C.n; i++) {
    const s = ses(i) || `conn:${conn(i)}`;
    if (!keep.has(s) || attempt(i)) continue;
    const e = end(i) || "?";
    if (!byEnd.has(e)) byEnd.set(e, {base: [], x: [], y: [], text: [], customdata: []});
    const t = byEnd.get(e);
    const t0 = (open(i) ?? 0) / 1e9, t1 = (close(i) ?? open(i) ?? 0) / 1e9;
    t.base.push(t0); t.x.push(Math.max(t1 - t0, 1e-6)); t.y.push(s); t.customdata.push(conn(i));
    t.text.push(`connection ${conn(i)} (${client(i)}), ${t0.toFixed(3)}-${t1.toFixed(3)} s, ` +
      `ended: ${e}, clean start ${cell(clean(i))}, session present ${cell(sp(i))}`);
  }
  const traces = [...byEnd.entries()].map(([e, t]) => ({type: "bar", orientation: "h", name: e,
    base: t.base, x: t.x, y: t.y, text: t.text, customdata: t.customdata, textposition: "none",
    hovertemplate: "%{text}<extra></extra>", marker: {color: END_COLORS[e] || "#555"}}));
  const X = D.reconnects;
  const rs = col(X, "session"), tc = col(X, "t_connect"), g = col(X, "gap"), cause = col(X, "cause"),
    rsp = col(X, "session_present"), rp = col(X, "redelivered_publish"),
    rr = col(X, "redelivered_pubrel"), res = col(X, "resumed"), ab = col(X, "abandoned"),
    next = col(X, "next_conn_id");
  const rx = [], ry = [], rt = [], rc = [];
  for (let i = 0; i < X.n; i++) {
    if (!keep.has(rs(i)) || tc(i) === null) continue;
    rx.push(tc(i) / 1e9); ry.push(rs(i)); rc.push(next(i));
    rt.push(`reconnection to connection ${next(i)}: gap ${g(i) === null ? "-" : (g(i) / 1e6).toFixed(3)} ms, ` +
      `cause ${cause(i)}, session present ${cell(rsp(i))}, redelivered ${rp(i)} PUBLISH / ` +
      `${rr(i)} PUBREL, resumed ${res(i)}, abandoned ${ab(i)}`);
  }
  if (rx.length) {
    traces.push({type: "scatter", mode: "markers", name: "reconnection", x: rx, y: ry, text: rt,
      customdata: rc, hovertemplate: "%{text}<extra></extra>",
      marker: {symbol: "diamond", size: 11, color: "#000"}});
  }
  Plotly.newPlot(el, traces, {title: {text: shown.length < clients ?
    `connections per client (the ${shown.length} with most connections of ${clients})` :
    "connections per client"}, barmode: "overlay",
  height: timelineHeight(shown.length), margin: {l: 160, r: 20, t: 40, b: 45},
  xaxis: {title: {text: "s since the capture start"}},
  yaxis: {type: "category", automargin: true, categoryorder: "array", categoryarray: shown.slice().reverse()},
  legend: {orientation: "h"}}, {displaylogo: false, responsive: true});
  el.on("plotly_click", (ev) => {
    if (ev.points.length) Ladder.show({conn: ev.points[0].customdata});
  });
}

function tcpSection(D, R) {
  const out = section("sec-tcp", "TCP",
    h("p", {}, `TCP retransmissions: ${R.tcp_retransmissions} segments on ` +
      `${R.tcp_retransmission_connections} connections (bytes the capture already had; counted ` +
      `apart from MQTT re-sends); stream gaps: ${R.stream_gaps}`),
    details(`qosinspect export ${D.capture} -o DIR (tcp_retransmissions)`));
  for (const j of R.clock_jumps) out.append(h("p", {}, "clock jump at frame ", frameLink(j.frame), `: ${j.detail}`));
  out.append(h("p", {}, `TCP streams with data not decoded as MQTT: ${R.undecoded_streams}`));
  if (D.undecoded.length) {
    out.append(table(["stream", "client", "server", "bytes", "why", "decode with"], D.undecoded,
      {align: "rllrll"}), details(`qosinspect export ${D.capture} -o DIR (undecoded_streams)`));
  }
  if (R.tcp_evidence !== undefined && R.tcp_evidence !== null) {
    out.append(h("h3", {}, "TCP evidence (as Wireshark's Expert Information counts it)"),
      h("div", {class: "scroll"}, valueTable(R.tcp_evidence, "tcp-evidence")));
  }
  return out;
}

/* The text report's Diagnoses section (report/diagnoses.py diagnoses_lines): one row per cause,
 * then its worst examples with their frames, evidence, advice and ladder command. */
function diagnosesSection(D, R) {
  const all = R.diagnoses || [];
  const out = section("sec-diagnoses", "Diagnoses");
  if (!all.length) {
    out.append(h("p", {}, "no slow exchange, reconnection or lost copy to explain (none over the floor)"));
    return out;
  }
  out.append(table(["cause", "exchanges", "reconnects", "not delivered", "latency explained ms"],
    all.map((d) => [d.cause, d.exchanges, d.reconnects, d.deliveries || 0, d.latency_explained_ms]),
    {id: "diagnoses-table", align: "lrrrr"}));
  for (const d of all) {
    out.append(h("h3", {}, d.cause));
    for (const ex of d.examples) {
      const what = "exchange" in ex ? `exchange ${ex.exchange}` :
        "reconnect" in ex ? `reconnection ${ex.reconnect}` : `copy not delivered ${ex.delivery}`;
      const frames = [];
      ex.frames.forEach((f, i) => { if (i) frames.push(", "); frames.push(frameLink(f)); });
      out.append(h("p", {class: "diagnosis"}, `${what} (conn ${ex.conn_id}, ` +
        `${ex.t_s.toFixed(3)} s, ${ex.latency_ms.toFixed(1)} ms, frames `,
        ...(frames.length ? frames : ["-"]), `): ${ex.evidence}`));
      if (ex.advice) out.append(h("p", {class: "details"}, `advice: ${ex.advice}`));
      out.append(details(ex.ladder.replace("CAPTURE", D.capture)));
    }
  }
  out.append(details(`qosinspect flows ${D.capture} --format json (cause per exchange); ` +
    "docs/diagnoses.md (signatures, thresholds)"));
  return out;
}

/* Any JSON value as nested key/value tables (sections whose shape this page does not fix). */
function valueTable(v, id) {
  if (v === null || typeof v !== "object") return h("span", {}, cell(v));
  if (Array.isArray(v)) {
    if (v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const keys = [...new Set(v.flatMap((x) => Object.keys(x)))];
      return table(keys, v.map((x) => keys.map((k) => (x[k] !== null && typeof x[k] === "object" ?
        valueTable(x[k]) : x[k]))), {id});
    }
    return h("span", {}, v.map(cell).join(", "));
  }
  return table(["", ""], Object.entries(v).map(([k, x]) => [k, x !== null && typeof x === "object" ?
    valueTable(x) : x]), {id, align: "l"});
}

function clearTextSection(D, R) {
  // the text report's own lines (report/text.py words them; a leading space: a details line),
  // without its pointer to the audit when the audit is below
  const out = section("sec-cleartext", "Clear text");
  const lines = D.clear_text_lines.filter((l) => !(D.audit && l.includes("qosinspect audit")));
  for (const line of lines) {
    const warn = line.startsWith("credentials in clear text:") && (R.clear_text.with_username || R.clear_text.with_password);
    out.append(line.startsWith(" ") ? h("p", {class: "details"}, h("code", {}, line.trim())) :
      h("p", {class: warn ? "warn" : null}, line));
  }
  const A = D.audit;
  if (A) {
    const counts = Object.entries(A.counts).map(([k, v]) => `${k} ${v}`).join(", ");
    out.append(h("h3", {}, "Audit"), h("p", {id: "audit-counts"}, `findings by severity: ${counts}`));
    if (A.findings.length) {
      out.append(h("div", {class: "scroll"}, table(["severity", "check", "finding", "frames", "what to do"],
        A.findings.map((f) => [f.severity, f.id, f.title,
          h("span", {}, f.frames.slice(0, 6).flatMap((n, i) => (i ? [" ", frameLink(n)] : [frameLink(n)])),
            f.frames.length > 6 ? " ..." : ""), f.remedy]),
        {id: "audit-table", align: "lll l"})));
    }
    for (const n of A.notes) out.append(h("p", {class: "note"}, n));
    out.append(details(`qosinspect audit ${D.capture}`));
  }
  return out;
}

function anomaliesSection(D, R) {
  const out = section("sec-anomalies", "Anomalies");
  const kinds = Object.keys(R.anomalies).sort();
  if (kinds.length) {
    out.append(table(["kind", "count", "first frame", "first detail"], kinds.map((k) => {
      const first = D.anomaly_first[k] || [null, ""];
      return [k, R.anomalies[k], frameLink(first[0]), first[1]];
    }), {id: "anomaly-table", align: "lrrl"}));
  } else {
    out.append(h("p", {}, "none"));
  }
  const notes = Object.entries(R.notes);
  if (notes.length) out.append(h("p", {}, "notes: " + notes.map(([k, v]) => `${k} ${v}`).join(", ")));
  out.append(details(`qosinspect export ${D.capture} -o DIR (anomalies)`));
  return out;
}

main().catch((err) => {
  const app = document.getElementById("app");
  app.textContent = `This report could not be shown: ${err}`;
  console.error(err);
});

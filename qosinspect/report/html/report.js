/* qosinspect HTML report: renders the payload that qosinspect/report/html/payload.py embeds.
 *
 * Everything the page needs is in the file: plotly.js (the plotly Python package's offline
 * bundle) and the data, both gzip-compressed and base64-encoded in <script> elements and
 * inflated by the browser's own DecompressionStream; nothing is fetched.
 *
 * The sections follow the text report (qosinspect/report/text.py) in its order and with its
 * numbers (they come from the report dict, the one `report --format json` writes); then the
 * exchanges (a virtual table: only the visible rows are in the DOM, sorting and filtering work
 * on index arrays) and the ladder (an SVG sequence diagram of one client or connection).
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
const SCATTER_SAMPLE = 20000;
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

/* The bytes of a packed <script> element (gzip, then base64), inflated by the browser. */
function inflated(id) {
  const bin = atob(document.getElementById(id).textContent.trim());
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip")));
}

/* plotly.js as a script of its own (a blob: URL, so the browser may compile it off the main
 * thread); resolves once it has run. */
async function loadPlotly() {
  const blob = await inflated("plotly-gz").blob();
  const url = URL.createObjectURL(new Blob([blob], {type: "text/javascript"}));
  await new Promise((resolve, reject) => {
    const lib = document.createElement("script");
    lib.onload = resolve;
    lib.onerror = () => reject(new Error("plotly.js could not be loaded"));
    lib.src = url;
    document.head.append(lib);
  });
  URL.revokeObjectURL(url);
}

/* Two steps: the report's text and tables first (what a reader looks at first), then
 * plotly.js and the charts. data-ready="text" then "1" on <body>; data-timing in ms. */
async function main() {
  const plotly = loadPlotly();
  const D = await inflated("data-gz").json();
  for (const tab of Object.values(D)) {
    for (const name of (tab && tab.delta) || []) {        // payload.py's delta columns
      const v = tab.cols[name];
      for (let i = 1; i < v.length; i++) v[i] += v[i - 1];
    }
  }
  window.qosinspectData = D;          // for a user's console and for the browser tests
  render(D);
  const text = performance.now();
  document.body.dataset.ready = "text";
  await plotly;
  const lib = performance.now();
  drawCharts(D);
  const charts = performance.now();
  document.body.dataset.timing = JSON.stringify({text, plotly: lib, charts});
  document.body.dataset.ready = "1";
}

/* -- the report ------------------------------------------------------------------------------ */

function render(D) {
  const R = D.report;
  const app = document.getElementById("app");
  app.textContent = "";
  app.append(header(D, R), qosSection(D, R), latencySection(D, R), outcomesSection(D, R),
    connectionsSection(D, R), tcpSection(D, R), clearTextSection(D, R), anomaliesSection(D, R),
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

function drawCharts(D) {
  drawLatency(D);
  drawTimeline(D);
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
    ["sec-connections", "Connections"], ["sec-tcp", "TCP"], ["sec-cleartext", "Clear text"],
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
  const out = section("sec-latency", "Latency per step (ms)",
    table(["QoS", "step", "p50", "p90", "p99", "max"], rows, {id: "step-table", align: "ll"}));
  for (const q of D.latency) out.append(h("div", {class: "chart", id: `latency-q${q.qos}`}));
  out.append(h("p", {class: "hint"}, "Counts of every exchange per logarithmic latency bin " +
    "(drag to zoom, double-click to reset). Below: latency of each exchange over the capture " +
    "(every outlier and every exchange that did not simply complete, an even sample of the " +
    `rest, ${num(SCATTER_SAMPLE)} points at most); click a point for its ladder.`));
  out.append(h("div", {class: "chart", id: "latency-time"}));
  return out;
}

function drawLatency(D) {
  for (const q of D.latency) {
    const edges = q.edges_ms;
    const traces = q.steps.map((s) => ({
      type: "scatter", mode: "lines",
      line: {shape: "hv", width: 1.5, dash: s.step === "total" ? "dot" : "solid"},
      name: `${STEP_NAMES[s.step]} (${num(s.n)})`,
      x: edges, y: [...s.counts, s.counts[s.counts.length - 1] || 0],
      hovertemplate: "%{x:.4g} ms: %{y} exchanges<extra>%{fullData.name}</extra>",
    }));
    Plotly.newPlot(`latency-q${q.qos}`, traces, {
      title: {text: `QoS ${q.qos}: latency per step`}, height: 300,
      margin: {l: 60, r: 20, t: 40, b: 45},
      xaxis: {type: "log", title: {text: "ms (log scale)"}},
      yaxis: {title: {text: "exchanges"}, rangemode: "tozero"}, legend: {orientation: "h"},
    }, {displaylogo: false, responsive: true});
  }
  const X = D.exchanges;
  const lat = col(X, "latency_ms"), t = col(X, "t_publish"), qos = col(X, "qos"),
    kept = col(X, "kept");
  // every outlier and notable exchange; of the even sample, at most SCATTER_SAMPLE points
  let sampled = 0;
  for (let i = 0; i < X.n; i++) if (kept(i) === 0) sampled++;
  const stride = Math.max(1, Math.ceil(sampled / SCATTER_SAMPLE));
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
  const el = document.getElementById("latency-time");
  if (!traces.length) { el.remove(); return; }
  Plotly.newPlot(el, traces, {title: {text: "latency over the capture"}, height: 320,
    margin: {l: 60, r: 20, t: 40, b: 45},
    xaxis: {title: {text: "s since the capture start"}},
    yaxis: {type: "log", title: {text: "ms (log scale)"}}, legend: {orientation: "h"}},
  {displaylogo: false, responsive: true});
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
  out.append(h("div", {class: "chart", id: "timeline"}));
  return out;
}

function drawTimeline(D) {
  const C = D.connections;
  const el = document.getElementById("timeline");
  if (!C.n) { el.remove(); return; }
  const ses = col(C, "session"), open = col(C, "t_open"), close = col(C, "t_close"),
    end = col(C, "end"), conn = col(C, "conn_id"), sp = col(C, "session_present"),
    clean = col(C, "clean_start"), client = col(C, "client"), attempt = col(C, "attempt");
  const counts = new Map();
  for (let i = 0; i < C.n; i++) {
    const key = ses(i) || `conn:${conn(i)}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const shown = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a) || (a < b ? -1 : 1)).slice(0, 80);
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
  Plotly.newPlot(el, traces, {title: {text: shown.length < counts.size ?
    `connections per client (the ${shown.length} with most connections of ${counts.size})` :
    "connections per client"}, barmode: "overlay",
  height: Math.min(160 + 26 * shown.length, 2400), margin: {l: 160, r: 20, t: 40, b: 45},
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
      valueTable(R.tcp_evidence, "tcp-evidence"));
  }
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

/* -- exchanges: a virtual table ------------------------------------------------------------ */

/* [column, title, width in px]: both tables (the header and the rows) take these widths. */
const EX_COLUMNS = [["ex_id", "ex", 70], ["t", "time s", 96], ["session", "client", 140],
  ["direction", "dir", 44], ["qos", "QoS", 50], ["packet_id", "id", 60], ["topic", "topic", 140],
  ["outcome", "outcome", 170], ["last_step", "last step", 96], ["latency_ms", "latency ms", 100],
  ["retransmissions", "re-sends", 78], ["frame", "frame", 80], ["kept", "why here", 84]];

function exColgroup() {
  return h("colgroup", {}, EX_COLUMNS.map(([, , w]) => h("col", {style: `width:${w}px`})));
}
const KEPT = ["sample", "notable", "outlier"];

function exchangesSection(D) {
  const X = D.exchanges;
  const dictOpts = (name) => [h("option", {value: ""}, "all"),
    ...(X.dicts[name] || []).map((v, i) => [v, i]).sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([v, i]) => h("option", {value: i}, v))];
  const note = X.total > X.n ?
    `${num(X.n)} of ${num(X.total)} exchanges: every one that did not simply complete ` +
    "(another outcome, a re-send, DUP, a reconnection), every outlier (latency above the p99 of " +
    `its QoS or step) and an even sample of the rest; qosinspect flows ${D.capture} lists them all.` :
    `all ${num(X.n)} exchanges.`;
  return section("sec-exchanges", "Exchanges",
    h("p", {id: "ex-note"}, note),
    h("div", {class: "filters"},
      h("label", {}, "QoS ", h("select", {id: "f-qos"}, h("option", {value: ""}, "all"),
        [0, 1, 2].map((q) => h("option", {value: q}, q)))),
      h("label", {}, "client ", h("select", {id: "f-client"}, dictOpts("session"))),
      h("label", {}, "outcome ", h("select", {id: "f-outcome"}, dictOpts("outcome"))),
      h("label", {}, "latency ≥ ", h("input", {id: "f-latency", type: "number", min: 0, step: "any",
        placeholder: "ms", size: 8})),
      h("span", {id: "ex-count"})),
    h("div", {class: "vhead"}, h("table", {class: "grid ex", id: "ex-head"}, exColgroup(), h("thead", {},
      h("tr", {}, EX_COLUMNS.map(([k, t]) => h("th", {"data-col": k, class: "sortable"}, t)))))),
    h("div", {class: "vscroll", id: "ex-scroll"}, h("div", {class: "spacer", id: "ex-spacer"}),
      h("table", {class: "grid ex", id: "ex-table"}, exColgroup(), h("tbody", {id: "ex-body"}))),
    h("p", {class: "hint"}, "Click a column to sort (again: reverse), a row for its ladder."));
}

const Exchanges = {
  init(D) {
    const X = D.exchanges;
    this.X = X;
    this.get = {};
    for (const [k] of EX_COLUMNS) this.get[k] = col(X, k === "t" ? "t_publish" : k);
    this.view = Int32Array.from({length: X.n}, (_, i) => i);
    this.sortKey = null; this.sortDir = 1;
    this.scroll = document.getElementById("ex-scroll");
    this.body = document.getElementById("ex-body");
    this.spacer = document.getElementById("ex-spacer");
    this.scroll.addEventListener("scroll", () => this.draw());
    for (const th of document.querySelectorAll("#ex-head th")) {
      th.addEventListener("click", () => this.sort(th.dataset.col));
    }
    for (const id of ["f-qos", "f-client", "f-outcome", "f-latency"]) {
      const el = document.getElementById(id);
      el.addEventListener(el.tagName === "SELECT" ? "change" : "input", () => this.filter());
    }
    this.body.addEventListener("click", (e) => {
      const tr = e.target.closest("tr");
      if (tr && !e.target.closest(".frame")) Ladder.showExchange(Number(tr.dataset.i));
    });
    this.filter();
  },
  filter() {
    const q = document.getElementById("f-qos").value, c = document.getElementById("f-client").value,
      o = document.getElementById("f-outcome").value, l = document.getElementById("f-latency").value;
    const cols = this.X.cols, n = this.X.n, out = [];
    const qv = q === "" ? null : Number(q), cv = c === "" ? null : Number(c),
      ov = o === "" ? null : Number(o), lv = l === "" ? null : Number(l);
    for (let i = 0; i < n; i++) {
      if (qv !== null && cols.qos[i] !== qv) continue;
      if (cv !== null && cols.session[i] !== cv) continue;
      if (ov !== null && cols.outcome[i] !== ov) continue;
      if (lv !== null && !(cols.latency_ms[i] >= lv)) continue;
      out.push(i);
    }
    this.view = Int32Array.from(out);
    if (this.sortKey) this.applySort(); else this.draw(true);
  },
  sort(key) {
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    this.applySort();
  },
  applySort() {
    const get = this.get[this.sortKey], dir = this.sortDir;
    const keys = new Map();
    const v = Array.from(this.view);
    const val = (i) => { if (!keys.has(i)) keys.set(i, get(i)); return keys.get(i); };
    v.sort((a, b) => {
      const x = val(a), y = val(b);
      if (x === y) return a - b;
      if (x === null) return 1;                   // missing values last, either way
      if (y === null) return -1;
      return (x < y ? -1 : 1) * dir;
    });
    this.view = Int32Array.from(v);
    for (const th of document.querySelectorAll("#ex-head th")) {
      th.classList.toggle("asc", th.dataset.col === this.sortKey && dir === 1);
      th.classList.toggle("desc", th.dataset.col === this.sortKey && dir === -1);
    }
    this.draw(true);
  },
  draw(reset) {
    if (reset) this.scroll.scrollTop = 0;
    const n = this.view.length;
    this.spacer.style.height = `${n * ROW_H}px`;
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / ROW_H) - 5);
    const last = Math.min(n, first + Math.ceil(this.scroll.clientHeight / ROW_H) + 10);
    const g = this.get;
    const rows = [];
    for (let r = first; r < last; r++) {
      const i = this.view[r];
      const tr = h("tr", {"data-i": i, class: g.outcome(i) === "complete" ? null : "bad"});
      for (const [k] of EX_COLUMNS) {
        let v = g[k](i);
        if (k === "t") v = v === null ? null : (v / 1e9).toFixed(6);
        else if (k === "kept") v = KEPT[v];
        const td = h("td", {class: `c-${k}`}, k === "frame" ? frameLink(v) : cell(v));
        tr.append(td);
      }
      rows.push(tr);
    }
    this.body.replaceChildren(...rows);
    document.getElementById("ex-table").style.transform = `translateY(${first * ROW_H}px)`;
    document.getElementById("ex-count").textContent = `${num(n)} rows`;
  },
};

/* -- ladder: an SVG sequence diagram -------------------------------------------------------- */

function ladderSection(D) {
  const C = D.connections;
  const ses = col(C, "session"), conn = col(C, "conn_id");
  const clients = [...new Set(Array.from({length: C.n}, (_, i) => ses(i)).filter((s) => s !== null))].sort();
  const conns = Array.from({length: C.n}, (_, i) => conn(i));
  return section("sec-ladder", "Ladder",
    h("div", {class: "filters"},
      h("label", {}, "client ", h("select", {id: "l-client"}, h("option", {value: ""}, "-"),
        clients.map((c) => h("option", {value: c}, c)))),
      h("label", {}, "or connection ", h("select", {id: "l-conn"}, h("option", {value: ""}, "-"),
        conns.map((c) => h("option", {value: c}, c)))),
      h("label", {}, "from ", h("input", {id: "l-since", type: "number", step: "any", size: 10,
        placeholder: "s"})),
      h("label", {}, "to ", h("input", {id: "l-until", type: "number", step: "any", size: 10,
        placeholder: "s"})),
      h("button", {id: "l-draw", type: "button"}, "draw")),
    h("p", {id: "l-note", class: "hint"}, "Pick a client or a connection (or click an exchange " +
      "or a connection above); times in seconds since the capture start."),
    h("div", {id: "l-svg", class: "ladder"}));
}

const Ladder = {
  init(D) {
    this.D = D;
    const P = D.packets;
    this.P = P;
    this.pk = {};
    for (const k of ["ts", "conn_id", "direction", "packet_type", "qos", "dup", "retain",
      "packet_id", "reason_code", "frame", "ex_id", "resend", "topic", "payload_len"]) {
      this.pk[k] = col(P, k);
    }
    const C = D.connections;
    this.conn = {};
    const names = ["conn_id", "session", "client_id", "client", "broker", "transport", "version",
      "clean_start", "keep_alive", "t_open", "t_close", "end", "transport_end", "closed_by",
      "connack_code", "session_present"];
    const g = Object.fromEntries(names.map((n) => [n, col(C, n)]));
    for (let i = 0; i < C.n; i++) {
      this.conn[g.conn_id(i)] = Object.fromEntries(names.map((n) => [n, g[n](i)]));
    }
    document.getElementById("l-draw").addEventListener("click", () => this.draw());
    document.getElementById("l-client").addEventListener("change", () => {
      document.getElementById("l-conn").value = ""; this.draw();
    });
    document.getElementById("l-conn").addEventListener("change", () => {
      document.getElementById("l-client").value = ""; this.draw();
    });
  },
  show({client, conn, since, until}) {
    document.getElementById("l-client").value = client ?? "";
    document.getElementById("l-conn").value = conn ?? "";
    document.getElementById("l-since").value = since ?? "";
    document.getElementById("l-until").value = until ?? "";
    this.draw();
    document.getElementById("sec-ladder").scrollIntoView();
  },
  showExchange(i) {
    const X = this.D.exchanges;
    const t = col(X, "t_publish")(i) / 1e9, lat = col(X, "latency_ms")(i);
    const end = t + (lat === null ? 0.5 : lat / 1e3);
    this.highlight = col(X, "ex_id")(i);
    this.show({client: col(X, "session")(i), since: +(t - 0.2).toFixed(6), until: +(end + 0.2).toFixed(6)});
  },
  draw() {
    const client = document.getElementById("l-client").value;
    const connSel = document.getElementById("l-conn").value;
    const sinceV = document.getElementById("l-since").value, untilV = document.getElementById("l-until").value;
    const since = sinceV === "" ? -Infinity : Number(sinceV) * 1e9;
    const until = untilV === "" ? Infinity : Number(untilV) * 1e9;
    const box = document.getElementById("l-svg");
    const note = document.getElementById("l-note");
    box.textContent = "";
    let ids;
    if (connSel !== "") ids = new Set([Number(connSel)]);
    else if (client !== "") ids = new Set(Object.values(this.conn).filter((c) => c.session === client || c.client_id === client).map((c) => c.conn_id));
    else { note.textContent = "Pick a client or a connection."; return; }
    const items = [];                                      // [ts, order, kind, index]
    const pk = this.pk, P = this.P;
    for (let i = 0; i < P.n; i++) {
      const ts = pk.ts(i);
      if (ids.has(pk.conn_id(i)) && ts >= since && ts <= until) items.push([ts, 1, "packet", i]);
    }
    const nPackets = items.length;
    const A = this.D.anomalies, an = {ts: col(A, "ts"), conn: col(A, "conn_id")};
    for (let i = 0; i < A.n; i++) {
      if (ids.has(an.conn(i)) && an.ts(i) >= since && an.ts(i) <= until) items.push([an.ts(i), 2, "anomaly", i]);
    }
    const T = this.D.tcp_retransmissions, tr = {ts: col(T, "ts"), conn: col(T, "conn_id")};
    for (let i = 0; i < T.n; i++) {
      if (ids.has(tr.conn(i)) && tr.ts(i) >= since && tr.ts(i) <= until) items.push([tr.ts(i), 2, "tcp", i]);
    }
    for (const id of ids) {
      const c = this.conn[id];
      if (c.t_open !== null && c.t_open >= since && c.t_open <= until) items.push([c.t_open, 0, "open", id]);
      if (c.t_close !== null && c.t_close >= since && c.t_close <= until) items.push([c.t_close, 3, "close", id]);
    }
    items.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const name = connSel !== "" ? `connection ${connSel}` : `client ${client}`;
    const win = sinceV !== "" || untilV !== "" ?
      ` --since ${sinceV || 0}${untilV !== "" ? ` --until ${untilV}` : ""}` : "";
    const cmd = `qosinspect ladder ${this.D.capture} ${connSel !== "" ? `--conn ${connSel}` : `--client '${client}'`}${win}`;
    const parts = [`${name}: ${num(nPackets)} packets`];
    if (P.total > P.n) {
      parts.push(`this page holds ${num(P.n)} of the capture's ${num(P.total)} packets (every ` +
        "connection packet and those of the exchanges in the table), so this window may lack " +
        `some: ${cmd} prints them all`);
    }
    if (items.length > LADDER_MAX_ROWS) parts.push(`the first ${LADDER_MAX_ROWS} rows of ${num(items.length)}; narrow the window`);
    note.textContent = parts.join("; ");
    box.append(this.svg(items.slice(0, LADDER_MAX_ROWS)));
  },
  label(i) {
    const pk = this.pk, t = pk.packet_type(i), pid = pk.packet_id(i);
    const idText = pid === null ? "" : ` id=${pid}`;
    const rc = pk.reason_code(i);
    const c = this.conn[pk.conn_id(i)];
    if (t === "PUBLISH") {
      const size = pk.payload_len(i) === null ? "" : ` (${pk.payload_len(i)} B)`;
      return `PUBLISH q${pk.qos(i)}${idText} ${pk.topic(i) ?? ""}${size}` +
        (pk.dup(i) ? "  DUP" : "") + (pk.retain(i) ? "  RETAIN" : "");
    }
    if (t === "CONNECT" && c) {
      return `CONNECT '${c.client_id ?? ""}' v${cell(c.version)} clean=${cell(c.clean_start)} ka=${cell(c.keep_alive)}`;
    }
    if (t === "CONNACK" && c) return `CONNACK rc=${cell(c.connack_code)} sp=${cell(c.session_present)}`;
    return `${t}${idText}${rc === null || rc === 0 ? "" : ` rc=0x${rc.toString(16).padStart(2, "0")}`}`;
  },
  svg(items) {
    const W = 900, left = 190, right = 820, top = 40;
    const gapNs = 1e9;                                      // idle time drawn as a break
    let y = top;
    const s = svg("svg", {width: W, class: "ladder-svg", id: "ladder-svg"});
    const lines = svg("g", {class: "lifelines"});
    s.append(lines);
    s.append(svg("text", {x: left, y: 20, "text-anchor": "middle", class: "who"}, "client"));
    s.append(svg("text", {x: right, y: 20, "text-anchor": "middle", class: "who"}, "broker"));
    let prev = null;
    const A = this.D.anomalies, T = this.D.tcp_retransmissions;
    for (const [ts, , kind, i] of items) {
      if (prev !== null && ts - prev > gapNs) {
        y += 6;
        s.append(svg("text", {x: (left + right) / 2, y: y + 8, "text-anchor": "middle", class: "gap"},
          `··· ${((ts - prev) / 1e9).toFixed(3)} s without packets ···`));
        y += ROW_H;
      }
      prev = ts;
      const row = svg("g", {class: `row ${kind}`});
      row.append(svg("text", {x: 4, y: y + 4, class: "time"}, (ts / 1e9).toFixed(6)));
      if (kind === "packet") {
        const c2b = this.pk.direction(i) === "c2b";
        const resend = this.pk.resend(i) === 1;
        const ex = this.pk.ex_id(i);
        const cls = `arrow${resend ? " resend" : ""}${ex !== null && ex === this.highlight ? " hl" : ""}`;
        const x1 = c2b ? left : right, x2 = c2b ? right : left;
        const g = svg("g", {class: cls, "data-frame": this.pk.frame(i), "data-conn": this.pk.conn_id(i)});
        g.append(svg("line", {x1, y1: y, x2: x2 + (c2b ? -6 : 6), y2: y}));
        g.append(svg("path", {d: c2b ? `M${x2},${y} l-8,-4 l0,8 z` : `M${x2},${y} l8,-4 l0,8 z`}));
        g.append(svg("text", {x: (left + right) / 2, y: y - 4, "text-anchor": "middle", class: "label"},
          this.label(i) + (resend ? "  [resend]" : "")));
        const f = svg("text", {x: 96, y: y + 4, class: "frame", "data-frame": this.pk.frame(i)}, `#${this.pk.frame(i)}`);
        f.append(svg("title", {}, `copy: frame.number == ${this.pk.frame(i)}`));
        row.append(g, f);
      } else if (kind === "anomaly" || kind === "tcp") {
        const tab = kind === "tcp" ? T : A;
        const frame = col(tab, "frame")(i);
        const text = kind === "tcp" ? `~~ TCP retransmission ${col(T, "direction")(i)}: ${col(T, "length")(i)} bytes again` :
          `~~ ${col(A, "kind")(i)} (${col(A, "direction")(i) ?? "-"}): ${col(A, "detail")(i)}`;
        row.append(svg("line", {x1: left, y1: y, x2: right, y2: y, class: "wave"}));
        row.append(svg("text", {x: (left + right) / 2, y: y - 4, "text-anchor": "middle", class: "label"}, text));
        const f = svg("text", {x: 96, y: y + 4, class: "frame", "data-frame": frame}, `#${frame}`);
        f.append(svg("title", {}, `copy: frame.number == ${frame}`));
        row.append(f);
      } else {
        const c = this.conn[i];
        const text = kind === "open" ? `== connection ${i} opened: client ${c.client} -> broker ${c.broker} (${c.transport})` :
          `== connection ${i} ended: ${c.end ?? "?"} (transport: ${c.transport_end}${c.closed_by ? ` by ${c.closed_by}` : ""})`;
        row.append(svg("line", {x1: left, y1: y, x2: right, y2: y, class: "conn"}));
        row.append(svg("text", {x: (left + right) / 2, y: y - 4, "text-anchor": "middle", class: "label conn"}, text));
      }
      s.append(row);
      y += ROW_H;
    }
    lines.append(svg("line", {x1: left, y1: 28, x2: left, y2: y}), svg("line", {x1: right, y1: 28, x2: right, y2: y}));
    s.setAttribute("height", y + 10);
    return s;
  },
};

main().catch((err) => {
  const app = document.getElementById("app");
  app.textContent = `This report could not be shown: ${err}`;
  console.error(err);
});

/* qosinspect HTML report: the ladder, an SVG sequence diagram of one client's or connection's
 * packets (loaded with report.js, which calls it): re-sends, gaps, malformed bytes and TCP
 * retransmissions marked, each arrow with its time, frame number, type and packet id, as the
 * text ladder (qosinspect ladder) prints them.
 */
"use strict";

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

/* qosinspect HTML report: the exchange table (loaded with report.js, which calls it).
 *
 * A virtual table: the rows are the payload's column arrays, only the visible rows exist in the
 * DOM (fixed row height, a spacer gives the scroll height), and sorting and filtering work on an
 * index array, so 100,000 rows scroll, sort and filter as fast as 100.
 */
"use strict";

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

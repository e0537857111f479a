"""Figures of an analysis: latency distributions, connection timelines, in-flight exchanges, and
a ladder (sequence) diagram.

Every function draws on the ``ax`` it is given (for notebooks and composed figures) or, without
one, on a new :class:`matplotlib.figure.Figure` that is not registered with pyplot; nothing here
changes matplotlib's global state (no ``pyplot``, no style, no rcParams). :func:`save_all` writes
the four PNG files ``qosinspect plot`` makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..analysis.api import Analysis
from .text import client_connections

__all__ = ["Timeline", "plot_inflight", "plot_ladder", "plot_latency", "plot_timeline",
           "save_all", "timeline_data"]

_MPL = tuple(int(x) for x in matplotlib.__version__.split(".")[:2])
_QOS_COLORS = {0: "#7f7f7f", 1: "#1f77b4", 2: "#d62728"}
_END_COLORS = {"disconnect": "#2ca02c", "fin": "#1f77b4", "rst": "#d62728",
               "keepalive_expired": "#ff7f0e", "taken_over": "#9467bd", "idle": "#8c564b",
               "reused": "#8c564b", "end_of_capture": "#7f7f7f"}


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    fig = Figure(figsize=size, layout="constrained")
    new: Axes = fig.subplots()
    return new


def _t0(analysis: Analysis) -> int:
    return analysis.result.t_first or 0


def _seconds(ts: pd.Series, t0: int) -> np.ndarray:
    values = ts.astype("int64").to_numpy()
    out: np.ndarray = (values - t0) / 1e9
    out[ts.isna().to_numpy()] = np.nan
    return out


def plot_latency(analysis: Analysis, ax: Axes | None = None) -> Axes:
    """Latency distribution per QoS (first PUBLISH to final ack of completed exchanges) and per
    step (every exchange that reached both ends of the step, completed or not: the report's
    per-step figures), as box plots over the points, on a log scale."""
    ax = _axes(ax, (9, 4.5))
    ex = analysis.exchanges
    done = ex[ex["outcome"].isin(["complete", "complete_after_reconnect"])]
    series: list[tuple[str, np.ndarray, int]] = []
    for qos, steps in ((1, (("latency_puback", "PUBLISH→PUBACK"),)),
                       (2, (("latency_pubrec", "PUBLISH→PUBREC"),
                            ("latency_pubrel", "PUBREC→PUBREL"),
                            ("latency_pubcomp", "PUBREL→PUBCOMP")))):
        sel = done[done["qos"] == qos]
        series.append((f"QoS {qos} total", sel["latency_ms"].dropna().to_numpy(), qos))
        every = ex[ex["qos"] == qos]
        for col, name in steps:
            ms = every[col].dropna().astype("int64").to_numpy() / 1e6
            series.append((f"QoS {qos} {name}", ms, qos))
    series = [s for s in series if s[1].size]
    if not series:
        ax.text(0.5, 0.5, "no completed QoS 1 or QoS 2 exchange", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    floor = 1e-3
    data = [np.maximum(v, floor) for _, v, _ in series]
    pos = np.arange(len(series))[::-1]
    horizontal: dict[str, Any] = ({"orientation": "horizontal"} if _MPL >= (3, 10)
                                  else {"vert": False})
    bp = ax.boxplot(data, positions=pos, widths=0.6, showfliers=False, patch_artist=True,
                    **horizontal)
    rng = np.random.default_rng(0)
    for i, ((_, v, qos), p) in enumerate(zip(series, pos, strict=True)):
        bp["boxes"][i].set(facecolor=_QOS_COLORS[qos], alpha=0.25)
        shown = data[i] if v.size <= 2000 else rng.choice(data[i], 2000, replace=False)
        ax.scatter(shown, p + rng.uniform(-0.2, 0.2, shown.size), s=6,
                   color=_QOS_COLORS[qos], alpha=0.5, linewidths=0)
    ax.set_yticks(pos, [f"{name} (n={v.size})" for name, v, _ in series])
    _cause_markers(ax, done, {qos: p for (name, _, qos), p in zip(series, pos, strict=True)
                              if name.endswith(" total")}, floor)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_title("QoS handshake latency, per QoS and per step")
    ax.grid(axis="x", which="both", alpha=0.3)
    return ax


#: Marker of each diagnosed cause on the latency plot (docs/diagnoses.md).
_CAUSE_MARKERS = {"nagle_delayed_ack": ("D", "#8c564b"), "zero_window": ("s", "#d62728"),
                  "retransmission_timeout": ("X", "black"), "no_known_cause": ("o", "#7f7f7f")}


def _cause_markers(ax: Axes, done: Any, rows: dict[int, float], floor: float) -> None:
    """The diagnosed exchanges over their QoS's total row, one marker per cause (legend)."""
    if "cause" not in done or "wire_publish" not in done:
        return
    hit = done[done["cause"].notna()]
    for cause, (marker, color) in _CAUSE_MARKERS.items():
        sel = hit[(hit["cause"] == cause) & hit["qos"].isin(list(rows))]
        if sel.empty:
            continue
        # from the PUBLISH's first byte: the time it spent on the wire counts
        wire = sel["wire_publish"].fillna(pd.Timedelta(0)).astype("int64").to_numpy() / 1e6
        ax.scatter(np.maximum(sel["latency_ms"].to_numpy() + wire, floor),
                   [rows[int(q)] for q in sel["qos"]], s=28, marker=marker,
                   facecolors="none", edgecolors=color, linewidths=1.0,
                   label=f"cause: {cause} ({len(sel)})")
    if len(hit):
        ax.legend(loc="lower right", fontsize="small")


#: Marker of each kind of TCP evidence on the timeline (Wireshark's tcp.analysis flags).
_EVIDENCE_MARKERS = {"lost_segment": ("v", "#d62728", "lost before capture"),
                     "duplicate_ack": ("|", "#7f7f7f", "duplicate ACK"),
                     "fast_retransmission": ("X", "#ff7f0e", "fast retransmission"),
                     "retransmission": ("x", "black", "TCP retransmission"),
                     "spurious_retransmission": ("+", "#9467bd", "spurious retransmission"),
                     "out_of_order": ("s", "#8c564b", "out of order"),
                     "ack_lost_segment": ("^", "#e377c2", "ACKed unseen segment")}


@dataclass
class Timeline:
    """What :func:`plot_timeline` draws (times in seconds since the capture's first frame).

    ``rows``: one label per row, top to bottom: the clients (sessions; reconnecting ones first),
    then the connections that have no MQTT detail (encrypted ones: ``conn N tls client ->
    broker``). ``bars``: (row, start, stop, how it ended) per connection; ``gaps``: (row,
    drop, reconnect) per reconnection; ``resends``: (row, t) per MQTT re-send; ``tcp``: per
    kind of TCP evidence (:data:`~qosinspect.analysis.tcp_evidence.REPORTED`), (row, t) per
    flagged frame; ``hidden``: rows not shown (past ``max_clients``).
    """

    rows: list[str] = field(default_factory=list)
    bars: list[tuple[int, float, float, str]] = field(default_factory=list)
    gaps: list[tuple[int, float, float]] = field(default_factory=list)
    resends: list[tuple[int, float]] = field(default_factory=list)
    tcp: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    hidden: int = 0


def timeline_data(analysis: Analysis, max_clients: int = 40) -> Timeline:
    """The rows and marks of the timeline (see :class:`Timeline`)."""
    from ..analysis.tcp_evidence import REPORTED

    conns = analysis.connections
    sessions = analysis.sessions
    # the clients worth seeing first: those with reconnections, then in order of appearance
    ranked = sorted(range(len(sessions)), key=lambda i: -int(sessions["n_reconnects"].iloc[i]))
    # then each connection without MQTT detail (encrypted, no client id) on a row of its own
    labels = [f"conn {c} {t} {a} -> {b}" if pd.isna(sess) else str(sess)
              for c, t, a, b, sess in zip(conns["conn_id"], conns["transport"], conns["client"],
                                          conns["broker"], conns["session"], strict=True)]
    bare = [label for label, sess, attempt in zip(labels, conns["session"], conns["attempt"],
                                                  strict=True) if pd.isna(sess) and not attempt]
    candidates = [str(sessions["session"].iloc[i]) for i in ranked] + bare
    out = Timeline(rows=candidates[:max_clients], hidden=max(0, len(candidates) - max_clients))
    row = {k: i for i, k in enumerate(out.rows)}
    conn_row = {int(c): row[label] for c, label in zip(conns["conn_id"], labels, strict=True)
                if label in row}
    t0 = _t0(analysis)
    starts = _seconds(conns["t_open"], t0)
    ends = _seconds(conns["t_close"], t0)
    for i, (c, end) in enumerate(zip(conns["conn_id"], conns["end"], strict=True)):
        if int(c) in conn_row and not math.isnan(starts[i]):
            stop = ends[i] if not math.isnan(ends[i]) else starts[i]
            out.bars.append((conn_row[int(c)], float(starts[i]), float(stop), str(end)))
    rc = analysis.reconnects
    for sess, a, b in zip(rc["session"], _seconds(rc["t_drop"], t0),
                          _seconds(rc["t_connect"], t0), strict=True):
        if str(sess) in row and not (math.isnan(a) or math.isnan(b)):
            out.gaps.append((row[str(sess)], float(a), float(b)))
    resent = analysis.packets_of(resend_only=True)
    out.resends = [(conn_row[int(c)], float(t)) for c, t in zip(
        resent["conn_id"], _seconds(resent["ts"], t0), strict=True) if int(c) in conn_row]
    ev = analysis.tcp_evidence
    for kind in REPORTED:
        sel = ev[ev["kind"] == kind]
        marks = [(conn_row[int(c)], float(t)) for c, t in zip(
            sel["conn_id"], _seconds(sel["ts"], t0), strict=True) if int(c) in conn_row]
        if marks:
            out.tcp[kind] = marks
    return out


def plot_timeline(analysis: Analysis, ax: Axes | None = None, *,
                  max_clients: int = 40) -> Axes:
    """One row per client: its connections as bars (coloured by how they ended), reconnection
    gaps as dotted lines, MQTT re-sends (triangles) and Wireshark's TCP evidence
    (retransmissions, segments lost before capture, duplicate ACKs ..., a marker per kind) on
    the row; then one row per connection without MQTT detail (encrypted ones), with its TCP
    evidence. The data is :func:`timeline_data`'s."""
    data = timeline_data(analysis, max_clients)
    ax = _axes(ax, (10, max(2.5, 0.4 * len(data.rows) + 1.5)))
    seen_ends: set[str] = set()
    for y, start, stop, end in data.bars:
        ax.barh(y, max(stop - start, 1e-6), left=start, height=0.5,
                color=_END_COLORS.get(end, "#7f7f7f"), alpha=0.7, edgecolor="black",
                linewidth=0.5)
        seen_ends.add(end)
    for y, a, b in data.gaps:
        ax.plot([a, b], [y] * 2, ls=":", color="black", lw=1)
    if data.resends:
        ax.scatter([t for _, t in data.resends], [y for y, _ in data.resends], marker="^",
                   color="#d62728", s=30, zorder=3)
    for i, (kind, marks) in enumerate(data.tcp.items()):
        # each kind a little above or below the others on the row (a fast retransmission is a
        # retransmission too, on the same frame)
        dy = 0.36 * (i / max(1, len(data.tcp) - 1) - 0.5) if len(data.tcp) > 1 else 0.0
        marker, color, _ = _EVIDENCE_MARKERS[kind]
        ax.scatter([t for _, t in marks], [y + dy for y, _ in marks], marker=marker,
                   color=color, s=25, zorder=3)
    ax.set_yticks(range(len(data.rows)), data.rows)
    ax.invert_yaxis()
    ax.set_xlabel("time since capture start (s)")
    ax.set_title("Connections and reconnections per client"
                 + (f" ({data.hidden} more clients not shown)" if data.hidden > 0 else ""))
    handles: list[Any] = [Line2D([], [], color=_END_COLORS.get(e, "#7f7f7f"), lw=6,
                                label=f"ended: {e}") for e in sorted(seen_ends)]
    handles += [Line2D([], [], ls=":", color="black", label="reconnection gap"),
                Line2D([], [], marker="^", ls="", color="#d62728", label="MQTT re-send")]
    handles += [Line2D([], [], marker=_EVIDENCE_MARKERS[k][0], ls="",
                       color=_EVIDENCE_MARKERS[k][1], label=_EVIDENCE_MARKERS[k][2])
                for k in data.tcp]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    if not data.rows:
        ax.text(0.5, 0.5, "no connection", ha="center", va="center", transform=ax.transAxes)
    return ax


def plot_inflight(analysis: Analysis, ax: Axes | None = None) -> Axes:
    """Open (unacknowledged) QoS 1 and QoS 2 exchanges over time; an exchange never finished
    stays open to the end of the capture."""
    ax = _axes(ax, (10, 4))
    ex = analysis.exchanges
    t0 = _t0(analysis)
    t_last = ((analysis.result.t_last or t0) - t0) / 1e9
    drawn = False
    for qos in (1, 2):
        sel = ex[ex["qos"] == qos]
        if sel.empty:
            continue
        start = _seconds(sel["t_publish"], t0)
        end = _seconds(sel["t_end"], t0)
        end = end[~np.isnan(end)]  # never finished: open to the end
        times = np.concatenate([start, end])
        delta = np.concatenate([np.ones(start.size), -np.ones(end.size)])
        order = np.lexsort((delta, times))  # at a tie, close before open
        level = np.cumsum(delta[order])
        ax.step(np.concatenate([[0.0], times[order], [t_last]]),
                np.concatenate([[0.0], level, level[-1:]]), where="post",
                color=_QOS_COLORS[qos], label=f"QoS {qos}")
        drawn = True
    ax.set_xlabel("time since capture start (s)")
    ax.set_ylabel("open exchanges")
    ax.set_title("In-flight QoS 1 / QoS 2 exchanges")
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no QoS 1 or QoS 2 exchange", ha="center", va="center",
                transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return ax


def plot_ladder(analysis: Analysis, *, client: str | None = None, conn: int | None = None,
                since_ns: int | None = None, until_ns: int | None = None,
                ax: Axes | None = None, max_packets: int = 120) -> Axes:
    """A ladder diagram of one client's (or one connection's) packets in a time window: client
    on the left, broker on the right, one arrow per packet at even spacing (times on the
    left), re-sends in red, stream gaps and connection ends as lines across."""
    conns = analysis.connections
    if client is not None:
        ids = set(int(i) for i in client_connections(conns, client)["conn_id"])
    elif conn is not None:
        ids = {conn} if conn in set(int(i) for i in conns["conn_id"]) else set()
        if not ids:
            raise LookupError(f"no connection {conn} in the capture")
    else:
        raise LookupError("give a client id or a connection number")
    pk = analysis.packets_of(ids)
    ts = pk["ts"].astype("int64")
    keep = np.ones(len(pk), dtype=bool)
    if since_ns is not None:
        keep &= (ts >= since_ns).to_numpy()
    if until_ns is not None:
        keep &= (ts <= until_ns).to_numpy()
    pk = pk[keep].head(max_packets)
    an = analysis.anomalies
    an = an[an["conn_id"].isin(ids) & an["kind"].isin(["stream_gap", "truncated", "resync",
                                                        "malformed"])]
    #: (ts, direction, or "!" for an anomaly and "=" for a connection end, label, resend)
    rows: list[tuple[int, str, str, bool]] = []
    for rec in pk.to_dict("records"):
        pid = "" if pd.isna(rec["packet_id"]) else f" id={rec['packet_id']}"
        extra = f" q{rec['qos']} {rec['topic']}" if rec["packet_type"] == "PUBLISH" else ""
        dup = " DUP" if rec["dup"] else ""
        rows.append((int(rec["ts"].value), str(rec["direction"]),
                     f"{rec['packet_type']}{pid}{extra}{dup}", bool(rec["resend"])))
    if len(pk):
        lo, hi = rows[0][0], rows[-1][0]
        for rec in an.to_dict("records"):
            t = int(rec["ts"].value)
            if lo <= t <= hi:
                rows.append((t, "!", f"{rec['kind']}", False))
        for c in analysis.result.connections:
            if c.conn_id in ids and c.t_close is not None and lo <= c.t_close <= hi:
                rows.append((c.t_close, "=", f"connection {c.conn_id} ended: {c.end}", False))
        rows.sort(key=lambda r: r[0])
    ax = _axes(ax, (8, max(3.0, 0.28 * len(rows) + 1.2)))
    t0 = _t0(analysis)
    n = len(rows)
    for x, name in ((0.0, "client"), (1.0, "broker")):
        ax.plot([x, x], [-0.5, n - 0.5], color="black", lw=1.5)
        ax.text(x, -0.9, name, ha="center", va="bottom", fontweight="bold")
    for i, (t, d, label, resend) in enumerate(rows):
        color = "#d62728" if resend else "black"
        if d in ("!", "="):
            line_color = "#ff7f0e" if d == "!" else "#7f7f7f"
            ax.plot([-0.05, 1.05], [i, i], ls="--", color=line_color, lw=1)
            ax.text(0.5, i - 0.1, f"~ {label} ~", ha="center", va="bottom", color=line_color,
                    fontsize="small")
        else:
            a, b = (0.0, 1.0) if d == "c2b" else (1.0, 0.0)
            ax.annotate("", xy=(b, i), xytext=(a, i),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
            ax.text(0.5, i - 0.1, label + (" (re-send)" if resend else ""), ha="center",
                    va="bottom", color=color, fontsize="small")
        ax.text(-0.08, i, f"{(t - t0) / 1e9:.6f}", ha="right", va="center",
                fontsize="x-small", family="monospace")
    ax.set_xlim(-0.45, 1.15)
    ax.set_ylim(n - 0.5 if n else 0.5, -1.2)
    ax.set_axis_off()
    who = f"client {client}" if client is not None else f"connection {conn}"
    ax.set_title(f"Ladder of {who} (time in s since capture start)")
    if not rows:
        ax.text(0.5, 0.5, "no packet in this window", ha="center", transform=ax.transAxes)
    return ax


def _busiest_client(analysis: Analysis) -> str | None:
    """The client a ladder is most worth drawing for: re-sends, then reconnections, then
    packets."""
    conns = analysis.connections
    if conns.empty or conns["session"].isna().all():
        return None
    score: dict[str, tuple[int, int, int]] = {}
    by_conn = dict(zip(conns["conn_id"], conns["session"], strict=True))
    resends = analysis.packets_of(resend_only=True)["conn_id"].value_counts()
    counts = (conns.set_index("conn_id")["n_packets_c2b"]
              + conns.set_index("conn_id")["n_packets_b2c"])
    for cid in set(str(c) for c in conns["session"].dropna()):
        ids = [k for k, v in by_conn.items() if str(v) == cid]
        score[cid] = (int(sum(resends.get(i, 0) for i in ids)), len(ids),
                      int(sum(counts.get(i, 0) for i in ids)))
    return max(sorted(score), key=lambda c: score[c])


def save_all(analysis: Analysis, outdir: str | Path, *, client: str | None = None,
             since_ns: int | None = None, until_ns: int | None = None,
             dpi: int = 110) -> list[Path]:
    """Write latency.png, timeline.png, inflight.png and ladder.png into ``outdir`` (made if
    missing); the ladder is of ``client`` (default: the one with the most re-sends)."""
    if client is not None:
        client_connections(analysis.connections, client)   # LookupError before any file
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in (("latency", plot_latency), ("timeline", plot_timeline),
                       ("inflight", plot_inflight)):
        ax = draw(analysis)
        path = out / f"{name}.png"
        _save(ax, path, dpi)
        written.append(path)
    who = client if client is not None else _busiest_client(analysis)
    if who is not None:
        ax = plot_ladder(analysis, client=who, since_ns=since_ns, until_ns=until_ns)
        path = out / "ladder.png"
        _save(ax, path, dpi)
        written.append(path)
    return written


def _save(ax: Axes, path: Path, dpi: int) -> None:
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=dpi)

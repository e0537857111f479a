"""The data of the HTML report: an :class:`~qosinspect.analysis.api.Analysis` as one JSON-ready
dict that the page's script renders (:mod:`qosinspect.report.html`).

Why a payload and not HTML written here: the numbers are the report's own
(``Analysis.report()``, the dict ``report --format json`` writes), so the page cannot disagree with
the text report; the layout lives once, in the page's template and script (package data).

What is in it, and what is left out to keep the page small (5 MB for a million-packet capture):

- ``report``: the report dict, whole (every count and percentile of the page comes from it).
- ``latency``: per QoS and step, exact counts of *every* exchange in logarithmic bins (a
  histogram needs no sampling: its size does not grow with the traffic).
- ``exchanges``: every exchange that did not simply complete (any other outcome, a re-send, a
  DUP flag, a completion after a reconnection), every outlier (a latency above the p99 of its QoS
  or step), and an even sample of the rest up to ``max_exchanges`` rows; ``kept`` says why each
  row is there (:data:`KEPT`) and ``total`` how many there were.
- ``packets`` (for the ladder): every packet when there are at most ``max_packets``; otherwise
  the connection packets (CONNECT, SUBSCRIBE, DISCONNECT ...) and the packets of the notable
  exchanges first, then those of the sampled exchanges, then keep-alives, up to the budget. The
  page says when a window is not complete and prints the ``qosinspect ladder`` command that is.
- ``connections``, ``reconnects``, ``anomalies``, ``tcp_retransmissions``: rows, capped.

Memory: the page is built without the analysis' full tables (on the benchmark capture they
were most of 800 MB). The exchanges are scanned through the few columns that decide what is
kept (outcome, re-sends, DUP, reconnection, latencies: also what the histograms count); the
page's columns are then built for the kept rows only. The packets are read a few connections
at a time (:meth:`Analysis.packets_of`), keeping per priority at most the budget. The page is
the same as from the full tables (tests/report/test_html.py compares them).

Tables are column-oriented (``{"n", "cols": {name: [...]}, "dicts": {name: [...]}}``): a text
column is a list of codes into its ``dicts`` entry (-1: missing), times are integer nanoseconds
since ``t0_ns`` (the capture's first packet; relative so JavaScript numbers hold them exactly),
missing values ``null``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...analysis.api import Analysis
from ..text import (
    SHOWN,
    clear_text_lines,
    first_anomalies,
    refusal_rows,
    undecoded_rows,
)

if TYPE_CHECKING:
    import pandas as pd

    from ...audit.findings import AuditReport

__all__ = ["KEPT", "LIMITS", "Limits", "build_payload"]

#: Why an exchange row is in the page, by its ``kept`` code.
KEPT = ("sample", "notable", "outlier")


@dataclass(frozen=True)
class Limits:
    """Row budgets of the page (the defaults keep the benchmark capture's page under 5 MB).
    ``exchanges`` is the budget of the sample: every notable exchange and outlier is kept even
    past it."""

    exchanges: int = 100_000
    packets: int = 60_000
    connections: int = 20_000
    reconnects: int = 20_000
    anomalies: int = 5_000
    tcp_retransmissions: int = 20_000
    bins: int = 60


LIMITS = Limits()

_EXCHANGE_COLS = ("ex_id", "qos", "session", "direction", "conn_id", "last_conn_id", "packet_id",
                  "topic", "outcome", "last_step", "frame", "t_publish", "latency_ms",
                  "retransmissions", "n_publish", "dup_seen", "spans_reconnect", "cause")
_PACKET_COLS = ("ts", "conn_id", "direction", "packet_type", "qos", "dup", "retain",
                "packet_id", "reason_code", "frame", "ex_id", "resend", "topic", "payload_len")
_CONNECTION_COLS = ("conn_id", "session", "client_id", "client", "broker", "transport",
                    "version", "clean_start", "keep_alive", "attempt", "t_open", "t_connect",
                    "t_connack", "connack_code", "session_present", "t_disconnect", "t_close",
                    "end", "transport_end", "closed_by", "n_packets_c2b", "n_packets_b2c",
                    "tcp_retransmissions", "stream_gaps", "unfinished_at_end")
_RECONNECT_COLS = ("session", "client_id", "prev_conn_id", "next_conn_id", "t_drop",
                   "t_connect", "gap", "cause", "clean_start", "session_present",
                   "unfinished_c2b", "unfinished_b2c", "redelivered_publish",
                   "redelivered_pubrel", "resumed", "abandoned")
_ANOMALY_COLS = ("ts", "kind", "severity", "conn_id", "session", "direction", "frame",
                 "packet_id", "ex_id", "detail")
_RETRANS_COLS = ("ts", "conn_id", "direction", "length", "frame")
_CONTROL_LAST = ("PINGREQ", "PINGRESP")
#: The exchange columns that decide which rows the page keeps, and its latency histograms.
_SCAN_COLS = ("qos", "outcome", "retransmissions", "dup_seen", "spans_reconnect", "latency_ms",
              "cause")


def build_payload(analysis: Analysis, *, capture: str = "CAPTURE",
                  audit: AuditReport | None = None, limits: Limits = LIMITS,
                  report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The page's data (see the module docstring). ``capture``: CAPTURE and its decoder options
    as the commands the page suggests need them; ``audit``: the capture's audit, summarised in
    the clear text section when given; ``report``: ``analysis.report()`` when the caller has
    it."""
    data = analysis.report() if report is None else report
    t0 = int(data["capture"]["t_first_ns"] or 0)
    steps = sorted({step for row in data["per_qos"] for step in row["latency_ms_by_step"]})
    scan = _exchange_columns(analysis, (*_SCAN_COLS, *(f"latency_{s}" for s in steps)))
    n_exchanges = len(scan)
    keep, kept = _exchange_rows(scan, data, limits.exchanges)
    latency = _latency_bins(scan, data, limits.bins)
    del scan
    ex_sel = _exchange_columns(analysis, _EXCHANGE_COLS).iloc[keep].assign(kept=kept)
    packets, n_packets = _packet_rows(analysis, ex_sel, limits.packets)
    conns = analysis.connections.sort_values("conn_id")
    return {
        "schema": 1,
        "capture": capture,
        "t0_ns": str(t0),
        "report": data,
        "latency": latency,
        "exchanges": {"total": n_exchanges, **_columns(ex_sel, (*_EXCHANGE_COLS, "kept"), t0,
                                                       ("ex_id", "frame", "t_publish"))},
        "packets": {"total": n_packets, **_columns(packets, _PACKET_COLS, t0, ("ts", "frame"))},
        "connections": {"total": len(conns),
                        **_columns(conns.head(limits.connections), _CONNECTION_COLS, t0)},
        "reconnects": {"total": len(analysis.reconnects),
                       **_columns(analysis.reconnects.head(limits.reconnects), _RECONNECT_COLS,
                                  t0)},
        "anomalies": {"total": len(analysis.anomalies),
                      **_columns(analysis.anomalies.head(limits.anomalies), _ANOMALY_COLS, t0)},
        "tcp_retransmissions": {
            "total": len(analysis.tcp_retransmissions),
            **_columns(analysis.tcp_retransmissions.head(limits.tcp_retransmissions),
                       _RETRANS_COLS, t0)},
        # the rows the text report shows, by its own functions (one rule, one place)
        "refusals": [[str(v) for v in row] for row in refusal_rows(analysis, SHOWN)],
        "undecoded": [[str(v) for v in row] for row in undecoded_rows(analysis, SHOWN)],
        "clear_text_lines": clear_text_lines(data["clear_text"], capture),
        "anomaly_first": {kind: [frame, detail]
                          for kind, (frame, detail) in first_anomalies(analysis).items()},
        "audit": None if audit is None else audit.to_dict(),
    }


def _exchange_rows(ex: pd.DataFrame, data: dict[str, Any], budget: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the exchanges the page keeps, in ``ex_id`` order, and why (:data:`KEPT`)."""
    n = len(ex)
    why = np.zeros(n, dtype=np.int8)
    if n == 0:
        return np.zeros(0, dtype=np.int64), why
    qos = ex["qos"].to_numpy()
    notable = ((ex["outcome"].astype(str) != "complete").to_numpy()
               | (ex["retransmissions"].to_numpy() > 0) | ex["dup_seen"].to_numpy()
               | ex["spans_reconnect"].to_numpy() | ex["cause"].notna().to_numpy())
    outlier = np.zeros(n, dtype=bool)
    latency = ex["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    for row in data["per_qos"]:
        q = row["qos"]
        p99 = row["latency_ms"]["p99"]
        if p99 is not None:
            outlier |= (qos == q) & (latency > p99)
        # the steps of a QoS are the report's (analysis.metrics), each with its column
        for step, pct in row["latency_ms_by_step"].items():
            if pct["p99"] is not None:
                outlier |= (qos == q) & (_ms(ex[f"latency_{step}"]) > pct["p99"])
    why[outlier] = 2
    why[notable] = 1
    chosen = why > 0
    rest = np.flatnonzero(~chosen)
    room = budget - int(chosen.sum())
    if room >= len(rest):
        chosen[rest] = True
    elif room > 0:
        # an even sample over the capture (not the first rows): every part of it is shown
        chosen[rest[np.unique(np.linspace(0, len(rest) - 1, room).astype(np.int64))]] = True
    keep = np.flatnonzero(chosen)
    return keep, why[keep]


def _exchange_columns(analysis: Analysis, names: Sequence[str]) -> pd.DataFrame:
    """Some columns of the exchanges table, built alone (the whole table of a large capture
    is several times the memory), or taken from the table when it is built already."""
    from ...analysis.tables import exchanges_frame

    if "exchanges" in vars(analysis):                    # the cached_property, built
        return analysis.exchanges[[c for c in analysis.exchanges.columns if c in names]]
    return exchanges_frame(analysis.result, list(names))


def _packet_rows(analysis: Analysis, ex_sel: pd.DataFrame, budget: int
                 ) -> tuple[pd.DataFrame, int]:
    """The packets of the ladder, in capture order, and how many packets there are: all when
    they fit the budget; otherwise by priority (the module docstring). Read a few connections
    at a time; of each priority, only the first ``budget`` packets in capture order can be
    in the page, so no more are kept."""
    import pandas as pd

    notable_ids = ex_sel.loc[ex_sel["kept"] > 0, "ex_id"].to_numpy(dtype=np.float64)
    sampled_ids = ex_sel.loc[ex_sel["kept"] == 0, "ex_id"].to_numpy(dtype=np.float64)
    levels: list[list[pd.DataFrame]] = [[] for _ in range(_LEFT_OUT + 1)]
    total = 0
    for conn_ids in _connection_groups(analysis.connections):
        pk = analysis.packets_of(conn_ids)
        pk = pk.assign(_read=np.arange(total, total + len(pk)))   # the order within a frame
        total += len(pk)
        priority = _packet_priority(pk, notable_ids, sampled_ids)
        for level, rows in enumerate(levels):
            rows.append(pk[priority == level])
            if sum(map(len, rows)) > 2 * budget:
                rows[:] = [_first_in_capture_order(pd.concat(rows), budget)]
    parts = [_first_in_capture_order(pd.concat(rows), budget) if rows else None
             for rows in levels]
    frames = [p for p in parts if p is not None]
    if total > budget:
        frames, room = [], budget
        for part in parts[:_LEFT_OUT]:
            if part is not None and room > 0:
                frames.append(part.iloc[:room])
                room -= len(frames[-1])
    if not frames:
        return analysis.packets_of([]), total
    return _first_in_capture_order(pd.concat(frames), None).drop(columns="_read"), total


#: Priority of the packets that are in the page only when every packet is.
_LEFT_OUT = 4
#: Packets read at once (a group of whole connections, unless one connection has more).
_PACKETS_PER_READ = 200_000


def _connection_groups(conns: pd.DataFrame) -> list[list[int]]:
    """The connections in groups of about :data:`_PACKETS_PER_READ` packets."""
    groups: list[list[int]] = [[]]
    n = 0
    sizes = (conns["n_packets_c2b"].fillna(0) + conns["n_packets_b2c"].fillna(0)).tolist()
    for conn, size in zip(conns["conn_id"].tolist(), sizes, strict=True):
        if groups[-1] and n + size > _PACKETS_PER_READ:
            groups.append([])
            n = 0
        groups[-1].append(int(conn))
        n += int(size)
    return groups


def _packet_priority(pk: pd.DataFrame, notable_ids: np.ndarray, sampled_ids: np.ndarray
                     ) -> np.ndarray:
    """Per packet, 0: connection packets (CONNECT, SUBSCRIBE, DISCONNECT ...), 1: packets of
    a notable exchange and re-sends, 2: packets of a sampled exchange, 3: keep-alives,
    :data:`_LEFT_OUT`: the others."""
    ex_id = pk["ex_id"].to_numpy(dtype=np.float64, na_value=np.nan)
    types = pk["packet_type"].astype(str).to_numpy()
    control = np.isnan(ex_id)
    priority = np.full(len(pk), _LEFT_OUT, dtype=np.int8)
    priority[np.isin(ex_id, sampled_ids)] = 2
    priority[np.isin(ex_id, notable_ids) | pk["resend"].to_numpy()] = 1
    priority[control] = 0
    priority[control & np.isin(types, _CONTROL_LAST)] = 3
    return priority


def _first_in_capture_order(pk: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """The first ``n`` packets of ``pk`` (all: None) in capture order: by the frame that
    completed them, packets of one frame (one connection) in the order they were read."""
    order = np.lexsort((pk["_read"].to_numpy(), pk["frame"].to_numpy()))
    return pk.iloc[order[:n] if n is not None else order]


def _ms(s: pd.Series) -> np.ndarray:
    """A timedelta column in milliseconds (NaN where missing)."""
    ns = s.to_numpy(dtype="timedelta64[ns]").astype(np.int64).astype(np.float64)
    ns[s.isna().to_numpy()] = np.nan
    out: np.ndarray = ns / 1e6
    return out


def _latency_bins(ex: pd.DataFrame, data: dict[str, Any], bins: int) -> list[dict[str, Any]]:
    """Per QoS with steps (the report's ``latency_ms_by_step``): logarithmic bin edges (ms)
    shared by its steps and the total, and the count of every exchange in each bin. Latencies
    of 0 (two packets with one timestamp) fall in the first bin, which starts at 1 µs at the
    lowest. The total is over completed exchanges, as the report's ``latency_ms``."""
    out: list[dict[str, Any]] = []
    qos = ex["qos"].to_numpy()
    total = ex["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    done = ex["outcome"].astype(str).isin(["complete", "complete_after_reconnect"]).to_numpy()
    for row in data["per_qos"]:
        q, steps = row["qos"], row["latency_ms_by_step"]
        if not steps:
            continue
        series = [(step, _ms(ex[f"latency_{step}"])[qos == q]) for step in steps]
        series.append(("total", total[(qos == q) & done]))
        values = [v[~np.isnan(v)] for _, v in series]
        present = [v for v in values if v.size]
        if not present:
            continue
        every = np.concatenate(present)
        lo = max(float(every.min()), 1e-3)
        hi = max(float(every.max()), lo * 10)
        edges = np.geomspace(lo, hi, bins + 1)
        traces = []
        for (step, _), v in zip(series, values, strict=True):
            counts, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
            traces.append({"step": step, "n": int(v.size), "counts": counts.tolist()})
        out.append({"qos": q, "edges_ms": [float(f"{e:.6g}") for e in edges],
                    "steps": traces})
    return out


def _columns(df: pd.DataFrame, names: Sequence[str], t0: int,
             delta: Sequence[str] = ()) -> dict[str, Any]:
    """``df``'s ``names`` as JSON-ready columns (see the module docstring). The ``delta``
    columns (in nearly increasing order, never missing) are written as differences from the
    row before, listed under ``delta``: a third of the compressed size of the exchanges."""
    import pandas as pd

    cols: dict[str, list[Any]] = {}
    deltas: list[str] = []
    dicts: dict[str, list[str]] = {}
    values: list[Any]
    for name in names:
        if name not in df.columns:
            continue
        s = df[name]
        missing = s.isna().to_numpy()
        kind = getattr(s.dtype, "kind", "O")
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            values = (s.to_numpy(dtype="datetime64[ns]").astype(np.int64) - t0).tolist()
        elif kind == "m":
            values = s.to_numpy(dtype="timedelta64[ns]").astype(np.int64).tolist()
        elif kind == "b":
            values = s.fillna(False).astype(bool).astype(np.int8).tolist()
        elif kind == "f":
            values = np.round(s.to_numpy(dtype=np.float64), 3).tolist()
        elif kind in "iu":
            values = s.to_numpy(dtype=np.int64, na_value=0).tolist()
        else:
            codes, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
            dicts[name] = [str(u) for u in uniques]
            cols[name] = codes.tolist()
            continue
        if missing.any():
            values = [None if m else v for v, m in zip(values, missing.tolist(), strict=True)]
        elif name in delta and kind in "iuM" and values:
            values = np.diff(np.asarray(values, dtype=np.int64), prepend=0).tolist()
            deltas.append(name)
        cols[name] = values
    return {"n": len(df), "cols": cols, "dicts": dicts, "delta": deltas}

"""Per-QoS figures: what ``qosinspect report`` prints and ``Analysis.summary()`` returns.

Computed with numpy straight from the packed stores (only the columns needed, no DataFrame), so a
report of a million-packet capture costs a few arrays. Definitions:

- ``publishes``: exchanges (a re-sent PUBLISH is not a new one), both directions.
- ``completed``: outcome ``complete`` or ``complete_after_reconnect`` (QoS 0: every publish).
- ``incomplete``: exchanges whose handshake never finished: ``incomplete`` (still open at the end
  of the capture), ``abandoned`` (the session ended first) and ``evicted``; for QoS 2 split by
  the last step reached (``qos2_incomplete``: no response, after PUBREC, after PUBREL).
- ``retransmissions``: MQTT-level re-sends (extra PUBLISH, PUBREC, PUBREL); ``dup_flagged``:
  PUBLISH packets with DUP=1. TCP retransmissions are counted apart, never mixed in.
- ``latency_ms``: first PUBLISH to final acknowledgement of completed exchanges (p50, p90, p99,
  max; linear interpolation); per step in ``latency_ms_by_step`` (every exchange that has both
  steps).
- ``duplicates_delivered``: copies a subscriber got of a message it already had, by the QoS of
  the copy; ``not_delivered``: expected copies that never came to a subscriber connected at the
  time and for a second after (a loss), by the publisher's QoS; ``not_delivered_offline``: the
  same for subscribers that were offline or left within that second (QoS 0 is dropped for them
  by design).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .correlate import CorrelationResult
from .diagnoses.report import diagnoses_report, wire_report
from .exposure import exposure
from .records import DELIVERY_REASONS, DELIVERY_STATUSES, OUTCOMES, STEPS
from .tcp_evidence import evidence_report

__all__ = ["INCOMPLETE_OUTCOMES", "STEP_SPANS", "conn_broker_codes", "evictions", "report_dict",
           "session_broker_codes", "summary_rows"]

_O = {name: i for i, name in enumerate(OUTCOMES)}
_S = {name: i for i, name in enumerate(STEPS)}
_DONE = (_O["complete"], _O["complete_after_reconnect"])
#: "incomplete" in the report and in ``flows --outcome incomplete``: not completed, not refused.
INCOMPLETE_OUTCOMES = ("open_at_end", "abandoned", "evicted")
_UNFINISHED = tuple(_O[name] for name in INCOMPLETE_OUTCOMES)
_STEPS_OF = {1: (("puback", "t_puback", "t_publish"),),
             2: (("pubrec", "t_pubrec", "t_publish"), ("pubrel", "t_pubrel", "t_pubrec"),
                 ("pubcomp", "t_pubcomp", "t_pubrel"))}
#: The steps of each QoS as (name, later column, earlier column): the latency of a step is
#: ``later - earlier`` (the report's per-step rows, and qosinspect.live's sketches).
STEP_SPANS = _STEPS_OF
_NAT = np.iinfo(np.int64).min
_CONNECTED = DELIVERY_REASONS.index("subscriber_connected")


def _pct(values_ns: np.ndarray) -> dict[str, float | None]:
    if values_ns.size == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ms = values_ns.astype(np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3),
            "p99": round(float(p99), 3), "max": round(float(ms.max()), 3)}


def _span(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    ok = (later != _NAT) & (earlier != _NAT)
    out: np.ndarray = later[ok] - earlier[ok]
    return out


def _per_qos(r: CorrelationResult, conns: np.ndarray | None = None
             ) -> dict[int, dict[str, Any]]:
    """Counters and latency samples of the QoS 1 and QoS 2 exchanges, chunk by chunk of the
    store (never a copy of the whole store); ``conns`` (a mask by conn_id) keeps only the
    exchanges of those connections."""
    acc: dict[int, dict[str, Any]] = {
        q: {"publishes": 0, "completed": 0, "incomplete": 0, "at_end_of_capture": 0,
            "abandoned": 0, "evicted": 0, "complete_after_reconnect": 0, "refused": 0,
            "protocol_error": 0, "retransmissions": 0, "dup_flagged": 0, "_total": [],
            "_steps": {name: [] for name, _, _ in _STEPS_OF[q]},
            "_last": {"no_response": 0, "after_pubrec": 0, "after_pubrel": 0}}
        for q in (1, 2)}
    for chunk in r.exchanges.chunks():
        for qos in (1, 2):
            a = acc[qos]
            keep = chunk["qos"] == qos
            if conns is not None:
                keep &= conns[chunk["conn_id"]]
            sel = chunk[keep]
            if not len(sel):
                continue
            outcome = sel["outcome"]
            done = np.isin(outcome, _DONE)
            unfinished = np.isin(outcome, _UNFINISHED)
            a["publishes"] += len(sel)
            a["completed"] += int(done.sum())
            a["incomplete"] += int(unfinished.sum())
            for name in ("abandoned", "evicted", "complete_after_reconnect", "refused",
                         "protocol_error"):
                a[name] += int((outcome == _O[name]).sum())
            a["at_end_of_capture"] += int((outcome == _O["open_at_end"]).sum())
            a["retransmissions"] += int(
                (sel["n_publish"].astype(np.int64) - 1).sum()
                + np.maximum(sel["n_pubrec"].astype(np.int64) - 1, 0).sum()
                + np.maximum(sel["n_pubrel"].astype(np.int64) - 1, 0).sum())
            a["dup_flagged"] += int(sel["n_dup"].sum())
            a["_total"].append(_span(sel["t_end"][done], sel["t_publish"][done]))
            for name, later, earlier in _STEPS_OF[qos]:
                a["_steps"][name].append(_span(sel[later], sel[earlier]))
            last = sel["last_step"][unfinished]
            a["_last"]["no_response"] += int((last == _S["publish"]).sum())
            a["_last"]["after_pubrec"] += int((last == _S["pubrec"]).sum())
            a["_last"]["after_pubrel"] += int((last == _S["pubrel"]).sum())
    return acc


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def conn_broker_codes(r: CorrelationResult) -> np.ndarray:
    """Broker code (an index of ``r.brokers``) by conn_id, -1 for an id no connection has."""
    codes = np.full(max(r.conn_brokers, default=-1) + 1, -1, dtype=np.int32)
    for conn_id, code in r.conn_brokers.items():
        codes[conn_id] = code
    return codes


def session_broker_codes(r: CorrelationResult) -> np.ndarray:
    """Broker code by session code."""
    return np.asarray(r.session_brokers, dtype=np.int32)


def _broker_masks(r: CorrelationResult, broker: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the connections (by conn_id) and sessions (by code) of one broker."""
    return conn_broker_codes(r) == broker, session_broker_codes(r) == broker


def summary_rows(r: CorrelationResult, broker: int | None = None) -> list[dict[str, Any]]:
    """One dict per QoS level (0, 1, 2) with the figures of the module docstring; of one
    broker's traffic when ``broker`` (its code in ``r.brokers``) is given."""
    conns, sessions = _broker_masks(r, broker) if broker is not None else (None, None)
    q0 = r.q0.chunks()
    if conns is not None:
        q0 = [c[conns[c["conn_id"]]] for c in q0]
    dl = r.deliveries.chunks() if r.deliveries is not None else []
    if sessions is not None:
        dl = [c[sessions[c["publisher"]]] for c in dl]
    dup_i = DELIVERY_STATUSES.index("duplicate")
    nd_i = DELIVERY_STATUSES.index("not_delivered")
    acc = _per_qos(r, conns)
    rows: list[dict[str, Any]] = []
    for qos in (0, 1, 2):
        row: dict[str, Any] = {"qos": qos}
        if qos == 0:
            n = sum(len(c) for c in q0)
            row.update(publishes=n, completed=n, incomplete=0, at_end_of_capture=0,
                       abandoned=0, evicted=0, complete_after_reconnect=0, refused=0,
                       protocol_error=0, retransmissions=0,
                       dup_flagged=sum(int(c["dup_first"].sum()) for c in q0),
                       latency_ms=_pct(np.zeros(0, dtype=np.int64)), latency_ms_by_step={})
        else:
            a = acc[qos]
            row.update({k: v for k, v in a.items() if not k.startswith("_")})
            row["latency_ms"] = _pct(_cat(a["_total"]))
            row["latency_ms_by_step"] = {name: _pct(_cat(parts))
                                         for name, parts in a["_steps"].items()}
            if qos == 2:
                row["qos2_incomplete"] = dict(a["_last"])
        counts = {"duplicates_delivered": 0, "not_delivered": 0, "not_delivered_offline": 0,
                  "downgraded": 0}
        for c in dl:
            missing = (c["status"] == nd_i) & (c["pub_qos"] == qos)
            counts["duplicates_delivered"] += int(((c["status"] == dup_i)
                                                   & (c["sub_qos"] == qos)).sum())
            counts["not_delivered"] += int((missing & (c["reason"] == _CONNECTED)).sum())
            counts["not_delivered_offline"] += int((missing & (c["reason"] != _CONNECTED))
                                                   .sum())
            counts["downgraded"] += int(((c["sub_qos"] >= 0) & (c["sub_qos"] < c["pub_qos"])
                                         & (c["pub_qos"] == qos)).sum())
        row.update(counts)
        rows.append(row)
    return rows


def brokers(r: CorrelationResult, rows: list[dict[str, Any]] | None = None
            ) -> list[dict[str, Any]]:
    """Per broker (a server endpoint that accepted a connection): its address, port,
    connections and per-QoS rows (those of the whole capture, ``rows``, when it is the only
    one), in order of first appearance. An endpoint that only answered SYNs with RST (nothing
    listening) is no broker: its attempts are in ``tcp_attempts_refused``."""
    accepted: Counter[int] = Counter(r.conn_brokers.get(c.conn_id, -1) for c in r.connections
                                     if not c.attempt)
    served = [(code, endpoint) for code, endpoint in enumerate(r.brokers) if accepted[code]]
    out = []
    for code, endpoint in served:
        host, _, port = endpoint.rpartition(":")
        per_qos = ([dict(row) for row in rows] if rows is not None and len(served) == 1
                   else summary_rows(r, code))
        if len(served) > 1:
            for row in per_qos:
                row.pop("qos2_incomplete", None)
        out.append({"address": host.strip("[]"), "port": int(port) if port.isdigit() else None,
                    "connections": accepted[code], "per_qos": per_qos})
    return out


def evictions(r: CorrelationResult) -> dict[str, int]:
    """What the state caps stopped following (docs/memory.md): open exchanges (outcome
    ``evicted``: past ``max_open_per_session`` or ``max_open_total``, or open on an evicted
    connection) and connections the decoder stopped following (past its ``max_flows``)."""
    return {"exchanges": r.n_evicted,
            "connections": sum(1 for c in r.connections if c.transport_end == "evicted")}


def report_dict(r: CorrelationResult) -> dict[str, Any]:
    """The whole report as JSON-ready data (the shape ``qosinspect report --format json``
    prints)."""
    rows = summary_rows(r)
    q2 = rows[2].pop("qos2_incomplete")
    gaps = np.array([x.gap_ns for x in r.reconnects if x.gap_ns is not None], dtype=np.int64)
    anomalies: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    for a in r.anomalies:
        (notes if a.severity == "note" else anomalies)[a.kind] += 1
    for kind, n in r.anomalies_suppressed.items():
        anomalies[kind] += n
    tcp_conns = sum(1 for c in r.connections if c.tcp_retransmissions)
    mqtt = [c for c in r.connections if not c.attempt]
    return {
        "per_qos": rows,
        "brokers": brokers(r, rows),
        "qos2_incomplete": q2,
        "connections": len(mqtt),
        "refused_connections": sum(1 for c in mqtt if c.connack_code not in (None, 0)),
        "tcp_attempts_refused": len(r.connections) - len(mqtt),
        "sessions": len(r.sessions),
        "reconnects": len(r.reconnects),
        "reconnect_gap_ms": _pct(gaps),
        "redelivered": {"publish": sum(x.redelivered_publish for x in r.reconnects),
                        "pubrel": sum(x.redelivered_pubrel for x in r.reconnects),
                        "resumed": sum(x.resumed for x in r.reconnects),
                        "abandoned": sum(x.abandoned for x in r.reconnects)},
        "connection_ends": dict(sorted(Counter(c.end or "open" for c in r.connections)
                                       .items())),
        "tcp_retransmissions": int(r.tcp_retransmissions.rows),
        "tcp_retransmission_connections": tcp_conns,
        "stream_gaps": sum(c.stream_gaps for c in r.connections),
        "undecoded_streams": r.undecoded_count,
        "tcp_evidence": evidence_report(r.tcp_evidence, r.connections),
        "diagnoses": diagnoses_report(r.diagnoses, r.t_first),
        "time_on_wire_ms": wire_report(r.diagnoses),
        "clock_jumps": [{"frame": a.frame, "detail": a.detail} for a in r.anomalies
                        if a.kind == "clock_jump"],
        "anomalies": dict(sorted(anomalies.items())),
        "notes": dict(sorted(notes.items())),
        "evictions": evictions(r),
        "clear_text": exposure(r.connections),
        "capture": {
            "t_first_ns": r.t_first, "t_last_ns": r.t_last,
            "duration_s": (None if r.t_first is None or r.t_last is None
                           else round((r.t_last - r.t_first) / 1e9, 6)),
            "events": r.n_events,
        },
    }

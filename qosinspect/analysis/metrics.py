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
  steps). Exact up to ``exact_percentiles_up_to`` values per series, from a DDSketch past it
  (:mod:`.aggregate`); ``percentiles`` says which series were sketched, and the error.
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

from .aggregate import INCOMPLETE_OUTCOMES, SERIES_OF
from .conntotals import ConnectionTotals
from .correlate import CorrelationResult
from .diagnoses.report import diagnoses_report, wire_report
from .tcp_evidence import evidence_report

__all__ = ["INCOMPLETE_OUTCOMES", "STEP_SPANS", "ConnectionTotals", "conn_broker_codes",
           "connection_counts", "evictions", "report_dict", "session_broker_codes",
           "summary_rows"]

_STEPS_OF = {q: spans[1:] for q, spans in SERIES_OF.items()}
#: The steps of each QoS as (name, later column, earlier column): the latency of a step is
#: ``later - earlier`` (the report's per-step rows, and qosinspect.live's sketches).
STEP_SPANS = _STEPS_OF


def conn_broker_codes(r: CorrelationResult) -> np.ndarray:
    """Broker code (an index of ``r.brokers``) by conn_id, -1 for an id no connection has."""
    codes = np.full(max(r.conn_brokers, default=-1) + 1, -1, dtype=np.int32)
    for conn_id, code in r.conn_brokers.items():
        codes[conn_id] = code
    return codes


def session_broker_codes(r: CorrelationResult) -> np.ndarray:
    """Broker code by session code."""
    return np.asarray(r.session_brokers, dtype=np.int32)


def summary_rows(r: CorrelationResult, broker: int | None = None) -> list[dict[str, Any]]:
    """One dict per QoS level (0, 1, 2) with the figures of the module docstring; of one
    broker's traffic when ``broker`` (its code in ``r.brokers``) is given. Read off the
    result's :class:`~.aggregate.Aggregate` (every exchange and delivery folded)."""
    return r.aggregate.qos_rows(broker)


def brokers(r: CorrelationResult, rows: list[dict[str, Any]] | None = None,
            counts: ConnectionTotals | None = None) -> list[dict[str, Any]]:
    """Per broker (a server endpoint that accepted a connection): its address, port,
    connections and per-QoS rows (those of the whole capture, ``rows``, when it is the only
    one), in order of first appearance. An endpoint that only answered SYNs with RST (nothing
    listening) is no broker: its attempts are in ``tcp_attempts_refused``."""
    accepted = (counts if counts is not None else connection_counts(r)).accepted
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




def connection_counts(r: CorrelationResult) -> ConnectionTotals:
    """The report's figures of the connections (:mod:`.conntotals`): those folded as they
    were released with the ones still held, in one pass that keeps none of them (a result's
    connections are made from packed rows as they are read)."""
    return r.connection_totals()


def evictions(r: CorrelationResult, counts: ConnectionTotals | None = None) -> dict[str, int]:
    """What the state caps stopped following (docs/memory.md): open exchanges (outcome
    ``evicted``: past ``max_open_per_session`` or ``max_open_total``, or open on an evicted
    connection) and connections the decoder stopped following (past its ``max_flows``;
    from ``counts`` when the caller has them)."""
    if counts is None:
        counts = connection_counts(r)
    return {"exchanges": r.n_evicted, "connections": counts.evicted}


def report_dict(r: CorrelationResult) -> dict[str, Any]:
    """The whole report as JSON-ready data (the shape ``qosinspect report --format json``
    prints)."""
    rows = summary_rows(r)
    q2 = rows[2].pop("qos2_incomplete")
    agg = r.aggregate
    rc = agg.reconnects
    anomalies: Counter[str] = Counter(r.anomaly_counts)
    for kind, n in r.anomalies_suppressed.items():
        anomalies[kind] += n
    sketched = agg.sketched()
    conns = connection_counts(r)
    return {
        "per_qos": rows,
        "brokers": brokers(r, rows, conns),
        "qos2_incomplete": q2,
        "connections": conns.mqtt,
        "refused_connections": conns.refused,
        "tcp_attempts_refused": conns.seen - conns.mqtt,
        "sessions": len(r.sessions) + r.n_sessions_released,
        "reconnects": rc.n,
        "reconnect_gap_ms": rc.gap.percentiles(),
        "redelivered": {"publish": rc.publish, "pubrel": rc.pubrel, "resumed": rc.resumed,
                        "abandoned": rc.abandoned},
        "connection_ends": dict(sorted(conns.ends.items())),
        "tcp_retransmissions": r.n_tcp_retransmissions,
        "tcp_retransmission_connections": conns.tcp_retransmission,
        "stream_gaps": conns.stream_gaps,
        "undecoded_streams": r.undecoded_count,
        "tcp_evidence": evidence_report(r.tcp_evidence, r.connections, conns.identities),
        "diagnoses": diagnoses_report(r.diagnoses, r.t_first),
        "time_on_wire_ms": wire_report(r.diagnoses),
        "clock_jumps": [{"frame": a.frame, "detail": a.detail} for a in r.anomalies
                        if a.kind == "clock_jump"],
        "anomalies": dict(sorted(anomalies.items())),
        "notes": dict(sorted(r.note_counts.items())),
        "evictions": evictions(r, conns),
        "clear_text": conns.exposure.report(),
        "percentiles": {"exact_up_to": agg.exact_up_to,
                        "relative_error": agg.accuracy if sketched else 0.0,
                        "sketched": sketched},
        "capture": {
            "t_first_ns": r.t_first, "t_last_ns": r.t_last,
            "duration_s": (None if r.t_first is None or r.t_last is None
                           else round((r.t_last - r.t_first) / 1e9, 6)),
            "events": r.n_events,
        },
    }

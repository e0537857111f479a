"""TCP evidence per connection and direction, as Wireshark counts it (issue 11 §5).

Why: a user debugging MQTT over a bad link compares with Wireshark's Expert Information; the
report must give the same counts (lost before capture, duplicate ACKs, fast retransmissions,
retransmissions, spurious retransmissions, out-of-order), on the connection and direction
where they happened, encrypted connections included. The flags come as
:class:`~qosinspect.events.TcpEvidence` events (:func:`qosinspect.capture.tcp_analysis.tcp_flags`);
this module counts them and lists them with their frames. Pure: events in, tables out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..events import TcpEvidence

__all__ = ["REPORTED", "SCHEMA", "evidence_counts", "evidence_frame", "evidence_summary"]

#: The kinds the report counts (Wireshark's ``tcp.analysis.*`` names), in its order.
REPORTED = ("lost_segment", "duplicate_ack", "fast_retransmission", "retransmission",
            "spurious_retransmission", "out_of_order", "ack_lost_segment")

#: (name, dtype, meaning) of :func:`evidence_frame`'s columns.
SCHEMA: tuple[tuple[str, str, str], ...] = (
    ("ts", "datetime64[ns, UTC]", "time of the flagged frame"),
    ("frame", "int64", "the flagged frame (Wireshark's number)"),
    ("conn_id", "int64", "TCP stream (Wireshark's tcp.stream, the decoder's conn_id)"),
    ("src", "string", "sender of the segment, ip:port"),
    ("dst", "string", "receiver of the segment, ip:port"),
    ("kind", "category", "Wireshark's tcp.analysis flag name"),
)


def _only(events: Iterable[Any]) -> list[TcpEvidence]:
    return [e for e in events if type(e) is TcpEvidence]


def evidence_frame(events: Iterable[Any]) -> pd.DataFrame:
    """One row per flag, in frame order (see :data:`SCHEMA`)."""
    rows = _only(events)
    frame = pd.DataFrame({
        "ts": pd.to_datetime([e.ts_ns for e in rows], unit="ns", utc=True),
        "frame": [e.frame for e in rows],
        "conn_id": [e.conn_id for e in rows],
        "src": [str(e.src) for e in rows],
        "dst": [str(e.dst) for e in rows],
        "kind": [e.kind for e in rows],
    })
    return frame.astype({name: dtype for name, dtype, _ in SCHEMA})


def evidence_counts(events: Iterable[Any]) -> pd.DataFrame:
    """Per connection and direction (sender -> receiver): one count column per kind of
    :data:`REPORTED`, and the frames of each (``frames_<kind>``, lists)."""
    counts: dict[tuple[int, str, str], Counter[str]] = {}
    frames: dict[tuple[int, str, str], dict[str, list[int]]] = {}
    for e in _only(events):
        if e.kind not in REPORTED:
            continue
        key = (e.conn_id, str(e.src), str(e.dst))
        counts.setdefault(key, Counter())[e.kind] += 1
        frames.setdefault(key, {}).setdefault(e.kind, []).append(e.frame)
    keys = sorted(counts)
    data: dict[str, Any] = {"conn_id": [k[0] for k in keys], "src": [k[1] for k in keys],
                            "dst": [k[2] for k in keys]}
    for kind in REPORTED:
        data[kind] = [counts[k][kind] for k in keys]
    for kind in REPORTED:
        data[f"frames_{kind}"] = [frames[k].get(kind, []) for k in keys]
    out = pd.DataFrame(data)
    return out.astype({"conn_id": "int64", "src": "string", "dst": "string",
                       **{kind: "int64" for kind in REPORTED}})


def evidence_summary(events: Iterable[Any]) -> dict[str, int]:
    """``tcp_evidence`` of ``report --format json``: the count of each kind, whole capture."""
    c = Counter(e.kind for e in _only(events))
    return {kind: c[kind] for kind in REPORTED}

"""TCP evidence per connection and direction, as Wireshark counts it (issue 11 §5).

Why: a user debugging MQTT over a bad link compares with Wireshark's Expert Information; the
report must give the same counts (lost before capture, duplicate ACKs, fast retransmissions,
retransmissions, spurious retransmissions, out-of-order, ACKed unseen segments), on the
connection and direction where they happened, encrypted connections included. The flags come
as :class:`~qosinspect.events.TcpEvidence` events (the capture decoder's one pass,
:mod:`qosinspect.capture.tcp_analysis`, or tshark's ``tcp.analysis`` fields); the correlator
counts them in an :class:`~.logs.EvidenceLog` (every flag counted, the first rows kept); this
module turns that into the report's ``tcp_evidence`` and the export's table. Pure: events in,
tables out; pandas only for the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..events import TcpEvidence
from .logs import EvidenceLog
from .records import Connection

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_CONNECTIONS", "MAX_FRAMES", "REPORTED", "SCHEMA", "evidence_counts",
           "evidence_frame", "evidence_log", "evidence_report", "evidence_summary",
           "per_direction"]

#: The kinds the report counts (Wireshark's ``tcp.analysis.*`` names), in its order. The export
#: table has every kind (keep-alives, window updates, zero windows ... too).
REPORTED = ("lost_segment", "duplicate_ack", "fast_retransmission", "retransmission",
            "spurious_retransmission", "out_of_order", "ack_lost_segment")
#: Frames listed per connection, direction and kind in the report (the count is complete).
MAX_FRAMES = 20
#: Connections with flags the report lists per direction (those that had one first); the
#: flags of later ones are in the totals (``unlisted``): a lossy link watched for days.
MAX_CONNECTIONS = 1000

#: (name, dtype, meaning) of :func:`evidence_frame`'s columns (the export's ``tcp_evidence``).
SCHEMA: tuple[tuple[str, str, str], ...] = (
    ("ts", "datetime64[ns, UTC]", "time of the flagged frame"),
    ("frame", "int64", "the flagged frame (Wireshark's number)"),
    ("conn_id", "int64", "TCP stream (Wireshark's tcp.stream, the decoder's conn_id)"),
    ("src", "string", "sender of the segment, ip:port"),
    ("dst", "string", "receiver of the segment, ip:port"),
    ("kind", "category", "Wireshark's tcp.analysis flag name (tcp.analysis.<kind>)"),
)


def evidence_log(events: Iterable[Any]) -> EvidenceLog:
    """The :class:`~.logs.EvidenceLog` of the TcpEvidence among ``events`` (every row kept)."""
    rows = [e for e in events if type(e) is TcpEvidence]
    log = EvidenceLog(len(rows))
    for e in rows:
        log.add(e)
    return log


def evidence_frame(events: Iterable[Any]) -> pd.DataFrame:
    """One row per flag, in frame order (see :data:`SCHEMA`)."""
    import pandas as pd

    rows = [e for e in events if type(e) is TcpEvidence]
    frame = pd.DataFrame({
        "ts": pd.to_datetime([e.ts_ns for e in rows], unit="ns", utc=True),
        "frame": [e.frame for e in rows],
        "conn_id": [e.conn_id for e in rows],
        "src": [str(e.src) for e in rows],
        "dst": [str(e.dst) for e in rows],
        "kind": [e.kind for e in rows],
    })
    return frame.astype({name: dtype for name, dtype, _ in SCHEMA})


def per_direction(log: EvidenceLog, connections: Sequence[Connection] = (),
                  max_frames: int = MAX_FRAMES,
                  released: Mapping[int, tuple[str, str, str | None]] | None = None
                  ) -> list[dict[str, Any]]:
    """One entry per connection and direction (sender -> receiver) with any :data:`REPORTED`
    flag, in ``conn_id`` order: the connection's client and broker and the ``direction``
    (``c2b``/``b2c``; None for a connection the analysis does not know), the count of each kind
    (the kinds seen) and its first ``max_frames`` frames. ``released``: the (client, broker,
    transport) of connections whose records were folded and released (a long watch)."""
    counts: dict[tuple[int, str, str], dict[str, int]] = {}
    for (conn_id, src, dst, kind), n in log.counts.items():
        if kind in REPORTED:
            counts.setdefault((conn_id, src, dst), {})[kind] = n
    # (only the connections with evidence: a result's connections are made as they are read)
    wanted = {conn_id for conn_id, _, _ in counts}
    conns: dict[int, tuple[str, str, str | None]] = {
        c.conn_id: (c.client, c.broker, c.transport)
        for c in connections if c.conn_id in wanted} if wanted else {}
    if released:
        conns.update((conn_id, released[conn_id]) for conn_id in wanted if conn_id in released)
    frames: dict[tuple[int, str, str], dict[str, list[int]]] = {}
    for e in log.rows:
        key = (e.conn_id, str(e.src), str(e.dst))
        if key in counts and e.kind in REPORTED:
            listed = frames.setdefault(key, {}).setdefault(e.kind, [])
            if len(listed) < max_frames:
                listed.append(e.frame)
    out = []
    for key in sorted(counts):
        conn_id, src, dst = key
        c = conns.get(conn_id)
        direction = None if c is None else ("c2b" if src == c[0] else "b2c")
        out.append({
            "conn_id": conn_id, "client": None if c is None else c[0],
            "broker": None if c is None else c[1],
            "transport": None if c is None else c[2],
            "direction": direction, "src": src, "dst": dst,
            "counts": {k: counts[key][k] for k in REPORTED if k in counts[key]},
            "frames": {k: frames.get(key, {}).get(k, []) for k in REPORTED if k in counts[key]},
        })
    return out


def _totals(log: EvidenceLog) -> dict[str, int]:
    return {kind: log.totals.get(kind, 0) for kind in REPORTED}


def evidence_report(log: EvidenceLog, connections: Sequence[Connection] = (),
                    released: Mapping[int, tuple[str, str, str | None]] | None = None
                    ) -> dict[str, Any]:
    """``tcp_evidence`` of ``report --format json``: ``total`` (the count of each
    :data:`REPORTED` kind, whole capture), ``connections`` (:func:`per_direction`, the first
    :data:`MAX_CONNECTIONS` connections with any flag; ``released``: the names of connections
    folded and released) and ``unlisted`` (the flags of :data:`REPORTED` kinds on the
    connections past those, counted in ``total`` only)."""
    return {"total": _totals(log),
            "connections": per_direction(log, connections, released=released),
            "unlisted": sum(n for kind, n in log.unlisted.items() if kind in REPORTED)}


def evidence_summary(events: Iterable[Any]) -> dict[str, int]:
    """The count of each :data:`REPORTED` kind among ``events``, whole capture."""
    return _totals(evidence_log(events))


def evidence_counts(events: Iterable[Any]) -> pd.DataFrame:
    """Per connection and direction (sender -> receiver): one count column per kind of
    :data:`REPORTED`, and the frames of each (``frames_<kind>``, lists; every one)."""
    import pandas as pd

    log = evidence_log(events)
    rows = per_direction(log, max_frames=len(log.rows))
    data: dict[str, Any] = {"conn_id": [r["conn_id"] for r in rows],
                            "src": [r["src"] for r in rows], "dst": [r["dst"] for r in rows]}
    for kind in REPORTED:
        data[kind] = [r["counts"].get(kind, 0) for r in rows]
    for kind in REPORTED:
        data[f"frames_{kind}"] = [r["frames"].get(kind, []) for r in rows]
    out = pd.DataFrame(data)
    return out.astype({"conn_id": "int64", "src": "string", "dst": "string",
                       **{kind: "int64" for kind in REPORTED}})

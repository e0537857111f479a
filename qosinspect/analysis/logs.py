"""The append-only logs the correlator writes to: anomalies, packets and TCP evidence.

The exchange tracker, the session tracker and the correlator's dispatch each find anomalies and
(in detail mode) see packets; rather than sharing the correlator's state as mixins, they are
handed these two objects. Each is one small rule:

* :class:`AnomalyLog`: an anomaly row per finding, at most ``max_per_kind`` rows per connection
  and kind (per capture for findings without a connection); past the cap only counted
  (``suppressed``), so a hostile capture of a million orphan acks costs a counter, not a million
  rows. Kinds are :class:`~qosinspect.anomalies.AnomalyKind` members: the registry says what
  each means and whether it is a note. Every row is counted by kind (``counts``, ``notes``:
  what the report prints); with ``examples_per_kind`` (report mode) only that many rows of each
  kind are *kept* (the first: the report shows the first of each kind), so the rows stay bounded
  however many connections; ``on_record`` hears of every row as it is made (a live view).
* :class:`PacketLog`: one row per MQTT packet in the packets store (detail mode only).
* :class:`EvidenceLog`: Wireshark's TCP flags (:class:`~qosinspect.events.TcpEvidence`), every
  one counted per connection, sender and kind; the first ``max_rows`` kept as rows (their
  frames), so a capture of a million duplicate ACKs costs counters, not a million rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

from ..anomalies import AnomalyKind, is_note
from ..events import MqttPacketEvent, TcpEvidence
from .records import AnomalyRecord, RowStore
from .state import ConnState

__all__ = ["DIRECTION_NAMES", "AnomalyLog", "EvidenceLog", "PacketLog"]

#: Direction codes (0 = c2b, 1 = b2c) to the names the tables use.
DIRECTION_NAMES: Final = ("c2b", "b2c")


@final
class AnomalyLog:
    """Anomaly rows, capped per connection and kind (see the module docstring)."""

    def __init__(self, max_per_kind: int, examples_per_kind: int | None = None,
                 on_record: Callable[[AnomalyRecord], None] | None = None) -> None:
        self.max_per_kind = max_per_kind
        self.examples_per_kind = examples_per_kind
        self.on_record = on_record
        self.rows: list[AnomalyRecord] = []
        #: Findings counted past the cap, per kind.
        self.suppressed: dict[str, int] = {}
        #: Rows made, per kind: anomalies and notes.
        self.counts: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        #: Rows per kind of findings that belong to no connection.
        self._global: dict[str, int] = {}

    def record(self, ts: int, kind: AnomalyKind, detail: str, conn: ConnState | None,
               direction: int | None, frame: int, packet_id: int | None = None,
               ex_id: int | None = None, source: str = "analysis") -> AnomalyRecord | None:
        """Record an anomaly (returned), or only count it past the per-kind cap (None)."""
        name = kind.value
        counts: dict[str, int] | None = self._global if conn is None else conn.anomaly_counts
        if counts is None:
            assert conn is not None
            counts = conn.anomaly_counts = {}
        n = counts.get(name, 0)
        counts[name] = n + 1
        if n >= self.max_per_kind:
            self.suppressed[name] = self.suppressed.get(name, 0) + 1
            return None
        note = is_note(kind)
        made = self.notes if note else self.counts
        seen = made.get(name, 0)
        made[name] = seen + 1
        keep = self.examples_per_kind
        if keep is not None and seen >= keep and self.on_record is None:
            return None
        sess = conn.sess.key if conn is not None and conn.sess is not None else None
        rec = AnomalyRecord(
            ts_ns=ts, kind=name, detail=detail, source=source,
            conn_id=None if conn is None else conn.conn_id, session=sess,
            direction=None if direction is None else DIRECTION_NAMES[direction], frame=frame,
            packet_id=packet_id, ex_id=ex_id,
            severity="note" if note else "anomaly")
        if keep is None or seen < keep:
            self.rows.append(rec)
        if self.on_record is not None:
            self.on_record(rec)
        return rec


@final
class PacketLog:
    """One row per MQTT packet (the ``packets`` table), in capture order."""

    def __init__(self, store: RowStore) -> None:
        self.store = store

    def log(self, ev: MqttPacketEvent, conn_id: int, d: int, ptype: int, qos: int, dup: int,
            retain: int, packet_id: int, reason: int, ex_id: int, resend: int, topic: int,
            payload_len: int) -> None:
        self.store.append(ev.ts_ns, conn_id, d, ptype, qos, dup, retain, packet_id, reason,
                          ev.wire_len, ev.frame, ex_id, resend, topic, payload_len)


@final
class EvidenceLog:
    """TCP evidence: counted in full, rows bounded (see the module docstring)."""

    def __init__(self, max_rows: int, max_conns: int | None = None) -> None:
        self.max_rows = max_rows
        self.max_conns = max_conns
        self.rows: list[TcpEvidence] = []
        #: kind -> how many, every connection.
        self.totals: dict[str, int] = {}
        #: (conn_id, sender ip:port, receiver ip:port, kind) -> how many, on the first
        #: ``max_conns`` connections with any flag (a lossy link watched for a week sees
        #: thousands); ``unlisted`` counts the flags of the others, by kind.
        self.counts: dict[tuple[int, str, str, str], int] = {}
        self.unlisted: dict[str, int] = {}
        #: The connections counted per direction (their names are kept when released).
        self.conn_ids: set[int] = set()

    def add(self, ev: TcpEvidence) -> None:
        kind = ev.kind
        self.totals[kind] = self.totals.get(kind, 0) + 1
        if len(self.rows) < self.max_rows:
            self.rows.append(ev)
        conn_ids = self.conn_ids
        if ev.conn_id not in conn_ids:
            if self.max_conns is not None and len(conn_ids) >= self.max_conns:
                self.unlisted[kind] = self.unlisted.get(kind, 0) + 1
                return
            conn_ids.add(ev.conn_id)
        key = (ev.conn_id, str(ev.src), str(ev.dst), kind)
        self.counts[key] = self.counts.get(key, 0) + 1

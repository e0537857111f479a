"""Events in, records out: connections, sessions, exchanges, reconnections, deliveries, anomalies.

The :class:`Correlator` is pure (no file, socket or clock; time is the events' ``ts_ns``) and
streaming: feed it the boundary events of :mod:`qosinspect.events` in capture order, from a pcap,
a live tap or tshark alike, then :meth:`Correlator.finish` returns a :class:`CorrelationResult`.
The exchange rules are in :mod:`.exchanges`, the connection and session rules (how a connection
ended, sessions keyed by client id, reconnections and what crosses them) in :mod:`.sessions`;
this module dispatches the events and holds these rules:

* **End of capture**: connections still open are closed as ``end_of_capture``; exchanges still
  open on them are ``open_at_end``; those whose connection had closed are ``abandoned``.
* **Unintroduced packets**: any packet on a connection before its CONNECT counts in
  ``n_before_connect`` and raises one ``missing_connect`` anomaly per connection; a PUBLISH
  after CONNECT but before CONNACK raises ``publish_before_connack`` (allowed from a client by
  MQTT 3.1.1 section 3.1.4 and MQTT 5 section 3.1.4, but worth seeing; Suricata calls both
  ``unintroduced_message``); a PUBLISH after a refused CONNACK, ``publish_after_refused_connack``.

Anomaly rows are capped per connection and kind (``max_anomalies_per_kind``); the rest are only
counted (``CorrelationResult.anomalies_suppressed``).

**Report mode** (``detail=False``, what ``report`` and ``watch`` run) keeps nothing that grows with
the capture's length: finished exchanges are folded into the :class:`~.aggregate.Aggregate` once
they can no longer be joined (:mod:`.exchanges`), QoS 0 publishes, deliveries and TCP
retransmissions are only counted, anomaly rows are kept up to ``max_anomalies_per_kind`` per
kind (all counted) and reconnection rows up to :data:`MAX_RECONNECT_ROWS` (all counted at the
end, from their connections). A live view reads :meth:`Correlator.snapshot` and listens
(``on_anomaly``, ``on_reconnect``, ``on_exchange_end``) instead of reading the stores.

**One copy of the rules.** This module, :mod:`.exchanges`, :mod:`.sessions`, :mod:`.deliveries`
and the stores are the only implementation. Where a C compiler was available at install time they
are compiled with mypyc (setup.py; :mod:`qosinspect._accel` says which ran): the same source, typed
for the compiler (final classes, native attributes), so there is nothing to keep in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, cast, final

from ..anomalies import AnomalyKind
from ..events import (
    Anomaly,
    CaptureStarted,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    MqttPacketEvent,
    StreamGap,
    TcpEvidence,
    TcpRetransmission,
    UndecodedStream,
)
from ..mqtt.enums import Direction
from ..mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    packet_type_of,
)
from .aggregate import Aggregate
from .connlist import ConnBrokers, ConnectionList
from .conntotals import ConnectionTotals
from .deliveries import DeliveryMatcher
from .diagnoses import Diagnoser, DiagnosisResult
from .diagnoses.core import MAX_CANDIDATES
from .diagnoses.delivery import OPEN_COUNTED, conn_at, offline_gap
from .exchanges import ABANDONED, OPEN_AT_END, ExchangeTracker
from .logs import DIRECTION_NAMES, AnomalyLog, EvidenceLog, PacketLog
from .options import AnalysisOptions
from .records import (
    EXCHANGE_COLUMNS,
    NO_TS,
    PACKET_COLUMNS,
    STEPS,
    TCP_RETRANSMISSION_COLUMNS,
    AnomalyRecord,
    Connection,
    Exchange,
    Interner,
    Reconnect,
    RowSink,
    RowStore,
    Session,
)
from .sessions import SessionTracker
from .snapshot import OpenHandshake, Snapshot
from .state import B2C, C2B, RELEASED, ConnState, OpenExchange, SessionState
from .tcp_evidence import MAX_CONNECTIONS as MAX_EVIDENCE_CONNECTIONS

__all__ = ["LEAVE_GRACE_NS", "MAX_RECONNECT_ROWS", "CorrelationResult", "Correlator", "correlate"]

#: A subscriber whose connection ends within this time after a publication is not counted as
#: losing it (its DISCONNECT was likely on the way already).
LEAVE_GRACE_NS: Final = 10**9
#: Undecoded streams kept as rows (the count goes on): a hostile capture may hold millions.
MAX_UNDECODED_ROWS: Final = 100_000
#: TCP evidence kept as rows (every one is counted): as many, for the same reason.
MAX_EVIDENCE_ROWS: Final = 100_000
#: Reconnections kept as rows in report mode (the report lists the first ten; all are counted).
MAX_RECONNECT_ROWS: Final = 1000

_DIRS: Final = DIRECTION_NAMES
_ACK_TYPES: Final[dict[type, int]] = {PubAck: 4, PubRec: 5, PubRel: 6, PubComp: 7}
#: Packet types only a broker sends (to place packets of unknown direction).
_FROM_BROKER: Final = frozenset({2, 9, 11, 13})


@dataclass
class CorrelationResult:
    """Everything the correlator found; :mod:`.tables` turns it into DataFrames."""

    #: In ``conn_id`` order (:class:`~.connlist.ConnectionList`: each record made when read).
    connections: Sequence[Connection]
    sessions: list[Session]
    reconnects: list[Reconnect]
    anomalies: list[AnomalyRecord]
    exchanges: RowStore
    q0: RowStore
    packets: RowStore | None
    deliveries: RowStore | None
    tcp_retransmissions: RowStore
    topics: Interner
    #: Session key and client id, by session code (the ``session`` column of the stores).
    session_keys: list[str]
    client_ids: list[str | None]
    #: Broker endpoints (``host:port``) by broker code, and each session's broker code.
    brokers: list[str] = field(default_factory=list)
    session_brokers: list[int] = field(default_factory=list)
    #: conn_id -> its broker's code (endpoints of one ``same_broker`` group share one).
    conn_brokers: Mapping[int, int] = field(default_factory=dict)
    #: TCP streams that carried data and were not decoded: the first MAX_UNDECODED_ROWS, and
    #: how many in all.
    undecoded: list[UndecodedStream] = field(default_factory=list)
    undecoded_count: int = 0
    #: Wireshark's TCP flags per connection and direction (counted; the first rows kept).
    tcp_evidence: EvidenceLog = field(default_factory=lambda: EvidenceLog(MAX_EVIDENCE_ROWS))
    t_first: int | None = None
    t_last: int | None = None
    n_events: int = 0
    n_evicted: int = 0
    #: Sessions dropped after ``session_idle_timeout_ns`` with no connection.
    n_sessions_dropped: int = 0
    #: Report mode: of those, the sessions released (not in ``sessions``), and the
    #: connections released after their idle timeout, folded (not in ``connections``).
    n_sessions_released: int = 0
    folded: ConnectionTotals = field(default_factory=ConnectionTotals)
    #: :meth:`connection_totals`, once made.
    held_totals: ConnectionTotals | None = None
    anomalies_suppressed: dict[str, int] = field(default_factory=dict)
    #: False when made with ``Correlator(detail=False)``: report columns only.
    detail: bool = True
    #: ``mypyc`` when the compiled analysis made this result, ``python`` when the interpreter
    #: ran the ``.py`` files (:func:`qosinspect._accel.analysis_implementation`).
    implementation: str = "python"
    #: Why exchanges and reconnections were slow (:mod:`.diagnoses`; None when not asked).
    diagnoses: DiagnosisResult | None = None
    #: What the report prints, folded (every exchange, delivery and reconnection counted, in
    #: both modes); anomaly and note rows made, by kind; TCP retransmissions seen (rows of
    #: ``tcp_retransmissions`` only with ``detail``).
    aggregate: Aggregate = field(default_factory=Aggregate)
    anomaly_counts: dict[str, int] = field(default_factory=dict)
    note_counts: dict[str, int] = field(default_factory=dict)
    n_tcp_retransmissions: int = 0
    #: True when the rows of exchanges, deliveries, packets and TCP retransmissions were handed
    #: to a :class:`~.records.RowSink` as they became final (``Correlator(sink=...)``): the
    #: stores here are then empty and the tables are read back from the sink.
    sunk: bool = False

    def exchange_objects(self) -> list[Exchange]:
        """Every exchange (QoS 0, 1 and 2) as an :class:`Exchange`, in ``ex_id`` order, with
        its generation (slow: for tests and small captures)."""
        self.require_detail("exchange objects")
        out = [self._exchange(self.exchanges.row(i)) for i in range(self.exchanges.rows)]
        out.extend(self._exchange(self._q0_row(i)) for i in range(self.q0.rows))
        out.sort(key=lambda e: e.ex_id)
        seen: dict[tuple[str | None, str, int], int] = {}
        for e in out:
            if e.packet_id is not None:
                k = (e.session, e.direction, e.packet_id)
                e.generation = seen.get(k, 0)
                seen[k] = e.generation + 1
        return out

    def connection_totals(self) -> ConnectionTotals:
        """The report's figures of every connection: those folded as connections were
        released, with the connections still held added (:mod:`.conntotals`); made once (the
        text report reads them after the JSON did: one walk of the held connections)."""
        if self.held_totals is None:
            # (the walk is conntotals' own, interpreted: mypyc would make a generator passed
            # from here a list of every connection)
            self.held_totals = self.folded.with_held(self.connections, self.conn_brokers,
                                                     self.tcp_evidence.conn_ids)
        return self.held_totals

    def require_detail(self, what: str) -> None:
        if not self.detail:
            raise ValueError(f"{what} need the full analysis: this one was made with "
                             "detail=False (report figures only)")
        if self.sunk:
            raise ValueError(f"{what}: the rows were handed to a sink as the analysis went "
                             "(read them from it: qosinspect.analysis.spool)")

    def _q0_row(self, i: int) -> dict[str, int]:
        row = {name: default for name, _, default in EXCHANGE_COLUMNS}
        row.update(self.q0.row(i))
        row.update(qos=0, last_conn_id=row["conn_id"], t_publish_last=row["t_publish"],
                   t_end=row["t_publish"], n_dup=row["dup_first"])
        return row

    def _exchange(self, row: dict[str, int]) -> Exchange:
        code = row["session"]
        return Exchange.from_row(row, self.topics, self.session_keys[code],
                                 self.client_ids[code])


@final
class Correlator:
    """Streaming correlation of boundary events (see the module docstring).

    It dispatches each event to its two trackers, :class:`~.exchanges.ExchangeTracker` (the QoS
    exchanges) and :class:`~.sessions.SessionTracker` (connections, sessions, reconnections),
    which share nothing but the logs they are handed (:class:`~.logs.AnomalyLog`,
    :class:`~.logs.PacketLog`), the delivery matcher and the :class:`~.aggregate.Aggregate`.
    ``options`` bound the state and say what to keep (:class:`~.options.AnalysisOptions`).
    The listeners hear, as they are found, of each anomaly row, reconnection (the record is
    completed as its connection goes on) and finished exchange (read it then: the object is
    the tracker's). ``sink`` (detail mode only) takes the rows of exchanges, deliveries, packets
    and TCP retransmissions as soon as they can no longer change, a block at a time, instead of
    the result keeping them (:class:`~.records.RowSink`; a batch worker's bounded memory).
    """

    def __init__(self, options: AnalysisOptions | None = None, *,
                 on_anomaly: Callable[[AnomalyRecord], None] | None = None,
                 on_reconnect: Callable[[Reconnect], None] | None = None,
                 on_exchange_end: Callable[[SessionState, OpenExchange], None] | None = None,
                 sink: RowSink | None = None) -> None:
        o = options if options is not None else AnalysisOptions()
        if sink is not None and not o.detail:
            raise ValueError("a row sink needs the detail analysis (detail=True)")
        self.sink = sink
        self.detail = o.detail
        self.default_version = o.default_version
        first, most = o.first_chunk_rows, o.max_chunk_rows
        self.aggregate = Aggregate(o.exact_percentiles_up_to, o.sketch_relative_accuracy)
        self.anomalies = AnomalyLog(o.max_anomalies_per_kind,
                                    None if o.detail else o.max_anomalies_per_kind, on_anomaly)
        self.packets = (PacketLog(RowStore(PACKET_COLUMNS, first_chunk_rows=first,
                                           max_chunk_rows=most))
                        if o.packets and o.detail else None)
        self.tcp_retrans = RowStore(TCP_RETRANSMISSION_COLUMNS, first_chunk_rows=first,
                                    max_chunk_rows=most)
        self.n_tcp_retransmissions = 0
        self.matcher = (DeliveryMatcher(self._presence, window_ns=o.delivery_window_ns,
                                        narrow=not o.detail, aggregate=self.aggregate)
                        if o.deliveries else None)
        self.ex = ExchangeTracker(self.anomalies, self.packets, self.matcher, detail=o.detail,
                                  max_open_per_session=o.max_open_per_session,
                                  max_open_total=o.max_open_total, first_chunk_rows=first,
                                  max_chunk_rows=most, aggregate=self.aggregate,
                                  max_joinable=o.max_joinable_finished,
                                  joinable_ns=o.joinable_ns, on_end=on_exchange_end,
                                  sink=sink)
        self.sess = SessionTracker(self.anomalies, self.ex, self.matcher,
                                   default_version=o.default_version,
                                   same_broker=o.same_broker,
                                   idle_timeout_ns=o.session_idle_timeout_ns)
        self.sess.max_reconnect_rows = None if o.detail else MAX_RECONNECT_ROWS
        self.sess.release = not o.detail and o.release_ended
        self.sess.on_reconnect = on_reconnect
        self.sess.on_reconnect_final = self._reconnect_final
        self.ex.sessions = self.sess.by_code
        if sink is not None:
            self.tcp_retrans.spill_to(sink, "tcp_retransmissions")
            if self.packets is not None:
                self.packets.store.spill_to(sink, "packets")
            if self.matcher is not None and self.matcher.store is not None:
                self.matcher.store.spill_to(sink, "deliveries")
        #: Says why exchanges and reconnections were slow (None: ``diagnose=False``).
        self.diag = (Diagnoser(o.diagnose_floor_ns, o.diagnose_percentile,
                               whole_cap=MAX_CANDIDATES if o.detail else o.max_verdicts)
                     if o.diagnose else None)
        self.ex.diagnoser = self.diag
        if self.diag is not None:
            self.sess.on_conn_released = self.diag.released
            self.ex.latencies = self.diag.latencies
            self.ex.diagnose_floor = self.diag.floor_ns
            if self.matcher is not None:
                self.matcher.on_slow = self._held
                self.matcher.slow_ns = self.diag.floor_ns
                self.matcher.on_missing = self._missing
        self._t_lo = _NO_LO
        self._t_hi = NO_TS
        #: TCP streams that carried data and were not decoded (the first MAX_UNDECODED_ROWS).
        self.undecoded: list[UndecodedStream] = []
        self.undecoded_count = 0
        self.tcp_evidence = EvidenceLog(MAX_EVIDENCE_ROWS, MAX_EVIDENCE_CONNECTIONS)
        self.sess.evidence = self.tcp_evidence
        self._last_info: object = None
        self._last_conn: ConnState | None = None
        self.n_events = 0

    def _presence(self, code: int, ts: int) -> int:
        return self.sess.by_code[code].presence(ts, LEAVE_GRACE_NS)

    @property
    def n_open_total(self) -> int:
        """Exchanges open now (all sessions)."""
        return self.ex.n_open_total

    # -- input ------------------------------------------------------------------------------------

    def feed_all(self, events: Iterable[Event]) -> CorrelationResult:
        """Feed every event, then :meth:`finish`."""
        self.consume(events)
        return self.finish()

    def consume(self, events: Iterable[Event]) -> None:
        """Feed every event (an exception from ``events`` propagates after everything before it
        was taken)."""
        for ev in events:
            if type(ev) is _EVENT:
                self._packet(ev)
            else:
                self.feed(ev)

    def consume_until(self, events: Iterator[Event], until_ns: int, most: int
                      ) -> tuple[int, int]:
        """Feed events from ``events`` until one stamped at or after ``until_ns`` was taken,
        ``most`` were taken or ``events`` ended; returns how many were taken and the newest
        ``ts_ns`` among them (``-2**63`` if none). A live view's loop (``watch``): the work per
        event stays in this loop (compiled), the view acts between calls (a snapshot when
        ``until_ns`` came, its notable events, a check of the clock)."""
        n = 0
        newest = _NO_NEWEST
        for ev in events:
            if type(ev) is _EVENT:
                self._packet(ev)
            else:
                self.feed(ev)
            n += 1
            ts = ev.ts_ns
            if ts > newest:
                newest = ts
            if ts >= until_ns or n >= most:
                break
        return n, newest

    def feed(self, ev: Event) -> None:
        """Take one event (in capture order)."""
        if type(ev) is _EVENT:
            self._packet(ev)
            return
        if type(ev) is CaptureStarted:  # time 0 is the file's first frame; not an event counted
            self._t_lo = min(self._t_lo, ev.ts_ns)
            self._t_hi = max(self._t_hi, ev.ts_ns)
            return
        if type(ev) is TcpEvidence:
            # Wireshark's flags of a segment already counted as an event (any connection,
            # encrypted ones too): not an event of its own
            self.tcp_evidence.add(ev)
            if self.diag is not None:
                self.diag.tcp(ev)
            return
        self._clock(ev.ts_ns)
        sess = self.sess
        if ev.ts_ns >= sess.next_sweep:
            sess.sweep(ev.ts_ns, ev.frame)
        if type(ev) is UndecodedStream:
            # Nothing dropped in silence: kept for the report and the export (bounded).
            self.undecoded_count += 1
            if len(self.undecoded) < MAX_UNDECODED_ROWS:
                self.undecoded.append(ev)
            return
        if isinstance(ev, ConnectionOpened):
            c = sess.conn(ev.conn, ev.ts_ns)
            c.rec.handshake_seen = ev.handshake_seen
            c.rec.t_open = ev.ts_ns
            if self.diag is not None:
                self.diag.connection(ev.conn.conn_id, str(ev.conn.client))
        elif isinstance(ev, ConnectionClosed):
            c = sess.conn(ev.conn, ev.ts_ns)
            c.rec.transport = ev.conn.transport     # learnt after the open (TLS, WebSocket)
            sess.close(c, ev.ts_ns, ev.how, ev.closed_by)
            if self.diag is not None:
                self.diag.closed(ev)
            self._last_info = None   # (its objects are released: packed into the table)
        elif isinstance(ev, TcpRetransmission):
            c = sess.conn(ev.conn, ev.ts_ns)
            c.rec.tcp_retransmissions += 1
            self.n_tcp_retransmissions += 1
            if self.detail:
                self.tcp_retrans.append(ev.ts_ns, c.conn_id, _dir(ev.direction), ev.length,
                                        ev.frame)
        elif isinstance(ev, StreamGap):
            c = sess.conn(ev.conn, ev.ts_ns)
            c.rec.stream_gaps += 1
            d = _dir(ev.direction)
            c.gap_anomaly = self.anomalies.record(
                ev.ts_ns, AnomalyKind.STREAM_GAP, f"{ev.missing_bytes} bytes missing from the "
                f"{_DIRS[d]} stream (never filled)", c, d, ev.frame, source="decoder")
            c.gap_frame = ev.frame
        elif isinstance(ev, Anomaly):
            ca = sess.conn(ev.conn, ev.ts_ns) if ev.conn is not None else None
            if ca is not None and ev.conn is not None:
                ca.rec.transport = ev.conn.transport  # "encrypted" comes with "tls"
            if ca is not None and ev.kind == "stream_gap" and ca.gap_frame == ev.frame:
                # The capture decoder says a StreamGap twice (event and anomaly): one row, with
                # its (richer) wording.
                if ca.gap_anomaly is not None:
                    ca.gap_anomaly.detail = ev.detail
                ca.gap_frame = -1
                return
            self.anomalies.record(ev.ts_ns, ev.kind, ev.detail, ca,
                          None if ev.direction is None else _dir(ev.direction), ev.frame,
                          source="decoder")

    def _clock(self, ts: int) -> None:
        self.n_events += 1
        if ts > self._t_hi:
            self._t_hi = ts
        if ts < self._t_lo:
            self._t_lo = ts

    @property
    def t_first(self) -> int | None:
        """The earliest timestamp seen (None before any event)."""
        return None if self._t_lo == _NO_LO else self._t_lo

    @property
    def t_last(self) -> int | None:
        """The latest timestamp seen (None before any event)."""
        return None if self._t_hi == NO_TS else self._t_hi

    # -- packets ----------------------------------------------------------------------------------

    def _packet(self, ev: MqttPacketEvent) -> None:
        """One MQTT packet (the hot path: one call per packet of the capture)."""
        # One unpacking instead of a lookup by name per field (compiled code reads a tuple's
        # items directly; a NamedTuple's fields by name go through the type's dictionary).
        ts, info, direction, p, wire_len, frame, first_frame, version, _, first_ts, ack_ts = ev
        self.n_events += 1
        if ts >= self.sess.next_sweep:
            self.sess.sweep(ts, frame)
        if ts > self._t_hi:
            self._t_hi = ts
        if ts < self._t_lo:         # not elif: the first event sets both
            self._t_lo = ts
        if info is self._last_info:  # the same flow as the packet before: no lookup
            c = cast(ConnState, self._last_conn)
        else:
            c = self.sess.conn(info, ts)
            # (an ended connection made an object again is packed again later: not cached)
            self._last_info = None if c.closed else info
            self._last_conn = c
        t = type(p)
        if direction is _C2B:
            d = C2B
        elif direction is _B2C:
            d = B2C
        else:
            d = B2C if packet_type_of(p) in _FROM_BROKER else C2B
        rec = c.rec
        # time on the wire: from the packet's first byte (0: the source does not know it)
        wire = ts - first_ts if 0 < first_ts < ts else 0
        if first_frame != frame and (diag := self.diag) is not None:
            diag.split(c.conn_id, str(info.client), d, first_ts or ts, ts, ack_ts, first_frame,
                       frame)
        if d == C2B:
            c.t_last_c2b = ts
            rec.n_packets_c2b += 1
            rec.n_bytes_c2b += wire_len
        else:
            c.t_last_b2c = ts
            rec.n_packets_b2c += 1
            rec.n_bytes_b2c += wire_len
        if rec.version is None and version is not None:
            rec.version = version
            rec.version_source = "decoder"
        if t is _PUBLISH:
            s = c.sess
            if s is None or not c.connack_seen or c.refused:
                s = self._introduce(ev, c, d, "PUBLISH")
            if d == C2B:
                rec.n_publish_c2b += 1
            else:
                rec.n_publish_b2c += 1
            self.ex.publish(ev, ts, frame, c, s, d, cast(Publish, p), wire)
            return
        ptype = _ACK_TYPES.get(t)
        if ptype is not None:
            pid, reason, _ = cast(PubAck, p)  # or PubRec, PubRel, PubComp: the same fields
            s = c.sess
            if s is None or not c.connect_seen:
                s = self._introduce(ev, c, d, _PTYPE_NAMES[ptype])
            if d == C2B and (ptype == 4 or ptype == 7) and (diag := self.diag) is not None:
                diag.freed(s.code, ts, frame)   # a slot of the broker's window towards it
            self.ex.ack(ev, ts, frame, c, s, d, ptype, pid, int(reason), wire)
            return
        if t is _CONNECT:
            assert isinstance(p, Connect)
            self.sess.connect(ev, c, d, p)
            if self.diag is not None and p.protocol_version >= 5:
                self.diag.connect(c.conn_id, str(info.client), p.properties.receive_maximum)
        elif t is _CONNACK:
            assert isinstance(p, ConnAck)
            if not c.connect_seen:
                self._introduce(ev, c, d, "CONNACK")
            self.sess.connack(ev, c, p)
            if self.diag is not None:
                self.diag.connack(c.conn_id, str(info.client), frame)
        else:
            if not c.connect_seen:
                self._introduce(ev, c, d, packet_type_of(p).name)
            if t is _SUBSCRIBE:
                assert isinstance(p, Subscribe)
                subs = c.pending_subs
                if subs is None:
                    subs = c.pending_subs = {}
                if len(subs) < 1024:
                    subs[p.packet_id] = tuple(
                        (sub.topic_filter, sub.qos, sub.no_local) for sub in p.subscriptions)
            elif t is _SUBACK:
                assert isinstance(p, SubAck)
                self.sess.suback(ev, c, d, p)
            elif t is _UNSUBSCRIBE:
                assert isinstance(p, Unsubscribe)
                unsubs = c.pending_unsubs
                if unsubs is None:
                    unsubs = c.pending_unsubs = {}
                if len(unsubs) < 1024:
                    unsubs[p.packet_id] = p.topic_filters
            elif t is _UNSUBACK:
                assert isinstance(p, UnsubAck)
                filters = (c.pending_unsubs.pop(p.packet_id, None)
                           if c.pending_unsubs is not None else None)
                if filters is None:
                    self.anomalies.record(
                        ts, AnomalyKind.ORPHAN_ACK, f"UNSUBACK for packet id {p.packet_id}: no "
                        "UNSUBSCRIBE with that id is pending", c, d, frame, p.packet_id)
                elif self.matcher is not None and c.sess is not None:
                    for f in filters:
                        self.matcher.unsubscribe(c.sess.code, f)
            elif t is _DISCONNECT:
                assert isinstance(p, Disconnect)
                self.sess.disconnect(ev, c, d, p)
        if (packets := self.packets) is not None:
            ptype_i = int(packet_type_of(p))
            pid = getattr(p, "packet_id", -1)
            reason = getattr(p, "reason_code", -1)
            if ptype_i in (1, 12, 13) or (ptype_i == 14 and (rec.version or 4) < 5):
                reason = -1
            packets.log(ev, c.conn_id, d, ptype_i, -1, 0, 0, pid if pid is not None else -1,
                        int(reason), -1, 0, -1, -1)

    def _introduce(self, ev: MqttPacketEvent, c: ConnState, d: int, name: str) -> SessionState:
        """A packet that should not come yet: before CONNECT, before CONNACK, or after a refused
        CONNACK. Returns the session to book it on."""
        rec = c.rec
        if not c.connect_seen:
            rec.n_before_connect += 1
            # The capture decoder reports a missing CONNECT itself (before the packet).
            counts = c.anomaly_counts
            if rec.n_before_connect == 1 and (counts is None or "missing_connect" not in counts):
                why = ("the CONNECT may be in the bytes missing before it (a stream gap)"
                       if rec.stream_gaps else
                       "the capture started mid-session: no TCP handshake was seen"
                       if not rec.handshake_seen else "the TCP handshake was seen")
                self.anomalies.record(ev.ts_ns, AnomalyKind.MISSING_CONNECT,
                              f"{_DIRS[d]} {name} on a connection without CONNECT ({why}); "
                              f"MQTT version {rec.version or self.default_version} assumed"
                              + ("" if rec.version else " (default)"),
                              c, d, ev.frame)
        elif name == "PUBLISH" and c.refused and d == C2B:
            self.anomalies.record(ev.ts_ns, AnomalyKind.PUBLISH_AFTER_REFUSED_CONNACK,
                          f"PUBLISH after CONNACK refused the connection (code "
                          f"{rec.connack_code}) [MQTT-3.2.2-5]", c, d, ev.frame)
        elif name == "PUBLISH" and not c.connack_seen:
            self.anomalies.record(ev.ts_ns, AnomalyKind.PUBLISH_BEFORE_CONNACK,
                          f"{_DIRS[d]} PUBLISH before the CONNACK"
                          + (" [MQTT-3.2.0-1]" if d == B2C else
                             " (a client may, but it is lost if the connection is refused)"),
                          c, d, ev.frame)
        s = c.sess
        if s is None:
            s = self.sess.session(f"conn:{c.conn_id}", None, anonymous=True, broker=c.broker)
            self.sess.attach(c, s, ev.ts_ns)
        return s

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> CorrelationResult:
        """Close what is still open (end of capture) and return the result."""
        t_end = self.t_last if self.t_last is not None else 0
        sess, ex_tracker = self.sess, self.ex
        for c in list(sess.conns.values()):
            if not c.closed:
                sess.close(c, t_end, "end_of_capture", None)
        sess.retire_all()
        self._last_info = None
        for s in sess.by_code:
            for ex in list(s.open.values()):
                how = sess.transport_end_of(ex.last_conn_id)
                if how is None or how == "end_of_capture":
                    ex_tracker.end(s, ex, OPEN_AT_END, NO_TS)
                else:
                    ex_tracker.end(s, ex, ABANDONED, sess.t_close_of(ex.last_conn_id) or NO_TS)
        if self.matcher is not None:
            self.matcher.finish()
        ex_tracker.fold_rest()
        if self.sink is not None:
            for store in (ex_tracker.q0, self.tcp_retrans,
                          self.packets.store if self.packets is not None else None,
                          self.matcher.store if self.matcher is not None else None):
                if store is not None:
                    store.spill()
        sess.name_sessions(self.anomalies.rows)
        sess.seal()
        session_keys = [s.key for s in sess.by_code]
        client_ids = [s.rec.client_id for s in sess.by_code]
        connections = ConnectionList(sess.table, session_keys, client_ids)
        return CorrelationResult(
            connections=connections,
            sessions=[s.rec for s in sess.by_code if s is not RELEASED],
            reconnects=sess.reconnects, anomalies=self.anomalies.rows,
            exchanges=ex_tracker.exchanges, q0=ex_tracker.q0,
            packets=self.packets.store if self.packets is not None else None,
            deliveries=self.matcher.store if self.matcher is not None else None,
            tcp_retransmissions=self.tcp_retrans, topics=ex_tracker.topics,
            session_keys=session_keys, client_ids=client_ids, brokers=list(sess.brokers),
            session_brokers=list(sess.session_broker),
            conn_brokers=ConnBrokers(sess.table),
            n_sessions_dropped=sess.n_sessions_dropped,
            n_sessions_released=sess.n_sessions_released, folded=sess.folded,
            t_first=self.t_first,
            t_last=self.t_last, n_events=self.n_events, n_evicted=ex_tracker.n_evicted,
            anomalies_suppressed=dict(self.anomalies.suppressed), detail=self.detail,
            undecoded=self.undecoded, undecoded_count=self.undecoded_count,
            tcp_evidence=self.tcp_evidence,
            implementation=IMPLEMENTATION, aggregate=self.aggregate,
            diagnoses=self.diag.finish() if self.diag is not None else None,
            anomaly_counts=dict(self.anomalies.counts), note_counts=dict(self.anomalies.notes),
            n_tcp_retransmissions=self.n_tcp_retransmissions, sunk=self.sink is not None)

    def _reconnect_final(self, rc: Reconnect) -> None:
        self.aggregate.reconnects.add((rc,))
        if self.diag is not None:
            self.diag.reconnect(rc, self._connection_record)

    def _held(self, pub_ts: int, subscriber: int, ex_id: int, ts: int) -> None:
        """A copy that came at least the floor after its publication: the subscriber's
        state now, for the delivery checks (:mod:`.diagnoses.delivery`)."""
        diag = self.diag
        assert diag is not None
        s = self.sess.by_code[subscriber]
        c = s.conn
        conn_id = c.conn_id if c is not None else s.last_conn_id
        offline = s.presence(pub_ts, 0) == 2
        n_open = 0
        if not offline:
            limit = diag.paced(conn_id, subscriber, pub_ts, ts)
            if not limit:
                return
            # the messages open towards it: enough to show the limit (a slow subscriber may
            # have thousands open, and every late copy would count them all)
            most = max(limit, OPEN_COUNTED)
            for key in s.open:
                n_open += key >> 16     # (1 for a broker-to-client exchange: B2C << 16 | id)
                if n_open >= most:
                    break
        diag.held(ex_id, conn_id, subscriber, pub_ts, ts, offline=offline,
                  gap=offline_gap(s.intervals, pub_ts) if offline else (0, 0),
                  session_present=c is not None and bool(c.rec.session_present),
                  n_open=n_open)

    def _missing(self, pub_ts: int, pub_ex_id: int, qos: int, subscriber: int,
                 reason: int) -> None:
        """An expected copy that never came."""
        diag = self.diag
        assert diag is not None
        s = self.sess.by_code[subscriber]
        diag.lost(pub_ex_id, qos, subscriber, conn_at(s.intervals, s.rec.conn_ids, pub_ts),
                  pub_ts, reason)

    def _connection_record(self, conn_id: int) -> Connection | None:
        """A connection's record while running: followed, or its packed row."""
        c = self.sess.conns.get(conn_id)
        if c is not None:
            return c.rec
        row = self.sess.table.row_of(conn_id)
        return self.sess.table.record(row)[0] if row >= 0 else None

    # -- while running --------------------------------------------------------------------------

    def snapshot(self, clients: bool = False) -> Snapshot:
        """Where the analysis stands (:class:`~.snapshot.Snapshot`): counters of what finished
        so far (folded or not yet) and the handshakes open, without changing anything; with
        ``clients``, a row per session too."""
        # Counts kept as exchanges open and end: a snapshot walks no session (a watch sees new
        # client ids for days), but for the per-client rows, asked for and bounded by labels.
        so_far = self.aggregate.copy(series=False)
        self.ex.count_unfolded(so_far, list(self.sess.session_broker)
                               if self.ex.detail else [])
        names = list(self.sess.brokers)
        open_by_broker = [{0: 0, 1: 0, 2: 0} for _ in names]
        open_by_qos = {0: 0, 1: 0, 2: 0}
        for slot, n in self.ex.open_counts.items():
            broker, qos = divmod(slot, 3)
            open_by_qos[qos] += n
            if 0 <= broker < len(names):
                open_by_broker[broker][qos] += n
        rows: list[tuple[int, str, int, int, int, int, int]] = []
        for s in self.sess.by_code if clients else ():
            if s is RELEASED:
                continue
            open1 = sum(1 for ex in s.open.values() if ex.qos == 1)
            rec = s.rec
            rows.append((s.code, rec.client_id if rec.client_id else s.key, rec.n_exchanges_c2b,
                         rec.n_exchanges_b2c, open1, len(s.open) - open1, rec.n_resends))
        conns = self.sess.conns
        return Snapshot(
            per_qos=so_far.qos_rows(), open_by_qos=open_by_qos, brokers=names,
            per_broker=[(so_far.qos_rows(code), open_by_broker[code])
                        for code in range(len(names))],
            connections_open=sum(1 for c in conns.values() if not c.closed),
            connections_seen=self.sess.n_connections_seen,
            tcp_retransmissions=self.n_tcp_retransmissions,
            anomalies=sum(self.anomalies.counts.values()) + sum(self.anomalies.notes.values()),
            reconnects=self.sess.n_reconnects, events=self.n_events, clients=rows)

    def open_handshakes(self, published_before: int) -> list[OpenHandshake]:
        """The QoS 1/2 exchanges still open whose first PUBLISH came before
        ``published_before`` (ns): the stalled ones, for a live view."""
        out = []
        for s in sorted(self.ex.busy.values(), key=_session_code):
            for ex in s.open.values():
                if ex.t_publish != NO_TS and ex.t_publish < published_before:
                    out.append(OpenHandshake(ex.ex_id, s.key, s.rec.client_id, ex.conn_id,
                                             _DIRS[ex.direction], ex.qos, ex.packet_id,
                                             _STEP_NAMES[ex.last_step], ex.t_publish))
        return out


def _session_code(s: SessionState) -> int:
    return s.code


def correlate(events: Iterable[Event], options: AnalysisOptions | None = None
              ) -> CorrelationResult:
    """Run a :class:`Correlator` with ``options`` over ``events``."""
    return Correlator(options).feed_all(events)


# Classes of other modules the hot path compares types with, as final names: compiled, a final
# name is a C static, an imported one a dictionary lookup on every use.
_EVENT: Final = MqttPacketEvent
_PUBLISH: Final = Publish
_CONNECT: Final = Connect
_CONNACK: Final = ConnAck
_SUBSCRIBE: Final = Subscribe
_SUBACK: Final = SubAck
_UNSUBSCRIBE: Final = Unsubscribe
_UNSUBACK: Final = UnsubAck
_DISCONNECT: Final = Disconnect
#: Whether this module (and with it the analysis: setup.py compiles them together) runs compiled.
IMPLEMENTATION: Final = "python" if __file__.endswith(".py") else "mypyc"
_C2B: Final = Direction.C2B
_B2C: Final = Direction.B2C
_NO_LO: Final = 2**63 - 1
_NO_NEWEST: Final = -(2**63)


def _dir(direction: Direction | None) -> int:
    return B2C if direction is Direction.B2C else C2B


_STEP_NAMES: Final = STEPS
_PTYPE_NAMES: Final = {4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP"}

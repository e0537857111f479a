"""Events in, records out: connections, sessions, exchanges, reconnections, deliveries, anomalies.

The :class:`Correlator` is pure (no file, socket or clock; time is the events' ``ts_ns``) and
streaming: feed it the boundary events of :mod:`qosinspect.events` in capture order, from a pcap,
a live tap or tshark alike, then :meth:`Correlator.finish` returns a :class:`CorrelationResult`.
The exchange rules are in :mod:`.exchanges`, the connection and session rules (how a connection
ended, sessions keyed by client id, reconnections and what crosses them) in :mod:`.sessions`;
this module dispatches the events and holds these rules:

* **End of capture**: connections still open are closed as ``end_of_capture``; exchanges still
  open on them are ``incomplete``; those whose connection had closed are ``abandoned``.
* **Unintroduced packets**: any packet on a connection before its CONNECT counts in
  ``n_before_connect`` and raises one ``missing_connect`` anomaly per connection; a PUBLISH
  after CONNECT but before CONNACK raises ``publish_before_connack`` (allowed from a client by
  MQTT 3.1.1 section 3.1.4 and MQTT 5 section 3.1.4, but worth seeing; Suricata calls both
  ``unintroduced_message``); a PUBLISH after a refused CONNACK, ``publish_after_refused_connack``.

Anomaly rows are capped per connection and kind (``max_anomalies_per_kind``); the rest are only
counted (``CorrelationResult.anomalies_suppressed``).

**Python and C.** This module, :mod:`.exchanges`, :mod:`.sessions` and :mod:`.deliveries` are
the reference and keep every rule. With the optional C accelerator (:mod:`qosinspect._accel`),
:meth:`Correlator.consume` of a correlator made with ``detail=False`` (what ``qosinspect
report`` uses) runs its loop in ``_speedups.correlate`` (``qosinspect/_csrc/correlate.c``,
``exchanges.c``, ``deliveries.c``), which takes the common steps of steady connections on the
same objects (the bookkeeping of every packet, pings, a new PUBLISH without DUP, the first
acknowledgement of each step of an open exchange, and the delivery matcher's publish and
deliver) exactly as the code here does them, and hands every other event, in order, to
:meth:`Correlator._packet` or :meth:`Correlator.feed`. ``tests/speedups/test_analysis_diff.py``
compares both paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from .. import _accel
from ..events import (
    Anomaly,
    CaptureStarted,
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Event,
    MqttPacketEvent,
    StreamGap,
    TcpRetransmission,
)
from ..mqtt.enums import Direction, PubAckReason, PubCompReason, PubRecReason, PubRelReason
from ..mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
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
from .deliveries import DeliveryMatcher
from .exchanges import ABANDONED, INCOMPLETE, ExchangeTracker
from .records import (
    DELIVERY_STATUSES,
    EXCHANGE_COLUMNS,
    NO_TS,
    OUTCOMES,
    PACKET_COLUMNS,
    Q0_COLUMNS,
    REPORT_EXCHANGE_COLUMNS,
    REPORT_Q0_COLUMNS,
    STEPS,
    TCP_RETRANSMISSION_COLUMNS,
    AnomalyRecord,
    Connection,
    Exchange,
    Interner,
    Reconnect,
    RowStore,
    Session,
)
from .sessions import SessionTracker
from .state import B2C, C2B, ConnState, DoneIndex, OpenExchange, SessionState

__all__ = ["LEAVE_GRACE_NS", "NOTE_KINDS", "CorrelationResult", "Correlator", "correlate"]

#: A subscriber whose connection ends within this time after a publication is not counted as
#: losing it (its DISCONNECT was likely on the way already).
LEAVE_GRACE_NS = 10**9

#: Decoder notices that describe the traffic rather than a fault: reported as notes.
NOTE_KINDS = frozenset({"websocket", "websocket_close", "ip_fragment", "encrypted"})
_DIRS = ("c2b", "b2c")
_ACK_TYPES: dict[type, int] = {PubAck: 4, PubRec: 5, PubRel: 6, PubComp: 7}
#: Packet types only a client sends / only a broker sends (to place packets of unknown direction).
_FROM_CLIENT = frozenset({1, 8, 10, 12})
_FROM_BROKER = frozenset({2, 9, 11, 13})


@dataclass
class CorrelationResult:
    """Everything the correlator found; :mod:`.tables` turns it into DataFrames."""

    connections: list[Connection]
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
    t_first: int | None = None
    t_last: int | None = None
    n_events: int = 0
    n_evicted: int = 0
    anomalies_suppressed: dict[str, int] = field(default_factory=dict)
    #: False when made with ``Correlator(detail=False)``: report columns only.
    detail: bool = True

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

    def require_detail(self, what: str) -> None:
        if not self.detail:
            raise ValueError(f"{what} need the full analysis: this one was made with "
                             "detail=False (report figures only)")

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


class Correlator(ExchangeTracker, SessionTracker):
    """Streaming correlation of boundary events (see the module docstring).

    ``packets=False`` skips the per-packet table, ``deliveries=False`` end-to-end matching;
    ``detail=False`` keeps only the columns a report needs (no packets table, no DataFrames:
    what ``qosinspect report`` uses on big captures). The caps bound the state: open exchanges
    per session (default 2 x 65535, the packet id space of both directions) and in total, and
    anomaly rows per connection and kind (the finished exchanges remembered for late
    acknowledgements and DUP re-sends are one per packet id and direction).
    """

    def __init__(self, *, packets: bool = True, deliveries: bool = True, detail: bool = True,
                 max_open_per_session: int = 2 * 65535, max_open_total: int = 200_000,
                 max_anomalies_per_kind: int = 1000,
                 delivery_window_ns: int = 60 * 10**9, default_version: int = 4) -> None:
        self.detail = detail
        self.exchanges = RowStore(EXCHANGE_COLUMNS if detail else REPORT_EXCHANGE_COLUMNS)
        self.q0 = RowStore(Q0_COLUMNS if detail else REPORT_Q0_COLUMNS)
        self.packets = RowStore(PACKET_COLUMNS) if packets and detail else None
        self.tcp_retrans = RowStore(TCP_RETRANSMISSION_COLUMNS)
        self.topics = Interner()
        self.max_open_per_session = max_open_per_session
        self.max_open_total = max_open_total
        self.max_anomalies_per_kind = max_anomalies_per_kind
        self.default_version = default_version
        self.n_open_total = 0
        self.n_evicted = 0
        self.next_ex_id = 0
        self._conns: dict[int, ConnState] = {}
        self._sessions: dict[str, SessionState] = {}
        self._by_code: list[SessionState] = []
        self.reconnects: list[Reconnect] = []
        self.anomalies: list[AnomalyRecord] = []
        self.suppressed: dict[str, int] = {}
        self._global_anomalies: dict[str, int] = {}
        self._t_lo = _NO_LO
        self._t_hi = NO_TS
        self._last_info: object = None
        self._last_conn: ConnState | None = None
        self.n_events = 0
        self.matcher = (DeliveryMatcher(
            lambda code, ts: self._by_code[code].presence(ts, LEAVE_GRACE_NS),
            window_ns=delivery_window_ns, narrow=not detail) if deliveries else None)
        #: The C loop of :meth:`consume` (report mode, accelerator built), else None.
        self._fast = _FAST if _accel.enabled() and not detail else None

    # -- input ------------------------------------------------------------------------------------

    def feed_all(self, events: Iterable[Event]) -> CorrelationResult:
        """Feed every event, then :meth:`finish`."""
        self.consume(events)
        return self.finish()

    def consume(self, events: Iterable[Event]) -> None:
        """Feed every event (the fast loop; an exception from ``events`` propagates after
        everything before it was taken). ``events`` must not feed this correlator itself: the C
        loop keeps its counters while it runs."""
        it = iter(events)
        if self._fast is not None and self._fast(self, it):
            return  # the C loop took them all (see the module docstring)
        packet = self._packet
        other = self.feed
        mpe = MqttPacketEvent
        for ev in it:
            if type(ev) is mpe:
                packet(ev)
            else:
                other(ev)

    def feed(self, ev: Event) -> None:
        """Take one event (in capture order)."""
        if type(ev) is MqttPacketEvent:
            self._packet(ev)
            return
        if type(ev) is CaptureStarted:  # time 0 is the file's first frame; not an event counted
            self._t_lo = min(self._t_lo, ev.ts_ns)
            self._t_hi = max(self._t_hi, ev.ts_ns)
            return
        self._clock(ev.ts_ns)
        if isinstance(ev, ConnectionOpened):
            c = self._conns.get(ev.conn.conn_id)
            if c is None:
                c = self._new_conn(ev.conn, ev.ts_ns)
            c.rec.handshake_seen = ev.handshake_seen
            c.rec.t_open = ev.ts_ns
        elif isinstance(ev, ConnectionClosed):
            c = self._conn(ev.conn, ev.ts_ns)
            c.rec.transport = ev.conn.transport     # learnt after the open (TLS, WebSocket)
            self._close(c, ev.ts_ns, ev.how, ev.closed_by)
        elif isinstance(ev, TcpRetransmission):
            c = self._conn(ev.conn, ev.ts_ns)
            c.rec.tcp_retransmissions += 1
            self.tcp_retrans.append(ev.ts_ns, c.conn_id, _dir(ev.direction), ev.length,
                                    ev.frame)
        elif isinstance(ev, StreamGap):
            c = self._conn(ev.conn, ev.ts_ns)
            c.rec.stream_gaps += 1
            d = _dir(ev.direction)
            c.gap_anomaly = self._anomaly(
                ev.ts_ns, "stream_gap", f"{ev.missing_bytes} bytes missing from the "
                f"{_DIRS[d]} stream (never filled)", c, d, ev.frame, source="decoder")
            c.gap_frame = ev.frame
        elif isinstance(ev, Anomaly):
            ca = self._conn(ev.conn, ev.ts_ns) if ev.conn is not None else None
            if ca is not None and ev.conn is not None:
                ca.rec.transport = ev.conn.transport  # "encrypted" comes with "tls"
            if ca is not None and ev.kind == "stream_gap" and ca.gap_frame == ev.frame:
                # The capture decoder says a StreamGap twice (event and anomaly): one row, with
                # its (richer) wording.
                if ca.gap_anomaly is not None:
                    ca.gap_anomaly.detail = ev.detail
                ca.gap_frame = -1
                return
            self._anomaly(ev.ts_ns, ev.kind, ev.detail, ca,
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
        ts = ev.ts_ns
        self.n_events += 1
        if ts > self._t_hi:
            self._t_hi = ts
        if ts < self._t_lo:         # not elif: the first event sets both
            self._t_lo = ts
        info = ev.conn
        if info is self._last_info:  # the same flow as the packet before: no lookup
            c = cast(ConnState, self._last_conn)
        else:
            got = self._conns.get(info.conn_id)
            c = got if got is not None else self._new_conn(info, ts)
            self._last_info = info
            self._last_conn = c
        p = ev.packet
        t = type(p)
        direction = ev.direction
        if direction is _C2B:
            d = C2B
        elif direction is _B2C:
            d = B2C
        else:
            d = B2C if packet_type_of(p) in _FROM_BROKER else C2B
        rec = c.rec
        if d == C2B:
            rec.t_last_c2b = ts
            rec.n_packets_c2b += 1
            rec.n_bytes_c2b += ev.wire_len
        else:
            rec.t_last_b2c = ts
            rec.n_packets_b2c += 1
            rec.n_bytes_b2c += ev.wire_len
        if rec.version is None and ev.version is not None:
            rec.version = ev.version
            rec.version_source = "decoder"
        if t is Publish:
            p = cast(Publish, p)
            s = c.sess
            if s is None or not c.connack_seen or c.refused:
                s = self._introduce(ev, c, d, "PUBLISH")
            if d == C2B:
                rec.n_publish_c2b += 1
            else:
                rec.n_publish_b2c += 1
            self._publish(ev, c, s, d, p)
            return
        ptype = _ACK_TYPES.get(t)
        if ptype is not None:
            p = cast(PubAck, p)  # or PubRec, PubRel, PubComp: the same fields
            s = c.sess
            if s is None or not c.connect_seen:
                s = self._introduce(ev, c, d, _PTYPE_NAMES[ptype])
            self._ack(ev, c, s, d, ptype, p.packet_id, int(p.reason_code))
            return
        if t is Connect:
            assert isinstance(p, Connect)
            self._connect(ev, c, d, p)
        elif t is ConnAck:
            assert isinstance(p, ConnAck)
            if not c.connect_seen:
                self._introduce(ev, c, d, "CONNACK")
            self._connack(ev, c, p)
        else:
            if not c.connect_seen:
                self._introduce(ev, c, d, packet_type_of(p).name)
            if t is Subscribe:
                assert isinstance(p, Subscribe)
                if len(c.pending_subs) < 1024:
                    c.pending_subs[p.packet_id] = tuple(
                        (sub.topic_filter, sub.qos, sub.no_local) for sub in p.subscriptions)
            elif t is SubAck:
                assert isinstance(p, SubAck)
                self._suback(ev, c, d, p)
            elif t is Unsubscribe:
                assert isinstance(p, Unsubscribe)
                if len(c.pending_unsubs) < 1024:
                    c.pending_unsubs[p.packet_id] = p.topic_filters
            elif t is UnsubAck:
                assert isinstance(p, UnsubAck)
                filters = c.pending_unsubs.pop(p.packet_id, None)
                if filters is None:
                    self._anomaly(ts, "orphan_ack", f"UNSUBACK for packet id {p.packet_id}: no "
                                  "UNSUBSCRIBE with that id is pending", c, d, ev.frame,
                                  p.packet_id)
                elif self.matcher is not None and c.sess is not None:
                    for f in filters:
                        self.matcher.unsubscribe(c.sess.code, f)
            elif t is Disconnect:
                assert isinstance(p, Disconnect)
                self._disconnect(ev, c, d, p)
        if self.packets is not None:
            ptype_i = int(packet_type_of(p))
            pid = getattr(p, "packet_id", -1)
            reason = getattr(p, "reason_code", -1)
            if ptype_i in (1, 12, 13) or (ptype_i == 14 and (rec.version or 4) < 5):
                reason = -1
            self._pkt(ev, c.conn_id, d, ptype_i, -1, 0, 0, pid if pid is not None else -1,
                      int(reason), -1, 0, -1, -1)

    def _pkt(self, ev: MqttPacketEvent, conn_id: int, d: int, ptype: int, qos: int, dup: int,
             retain: int, packet_id: int, reason: int, ex_id: int, resend: int, topic: int,
             payload_len: int) -> None:
        store = self.packets
        assert store is not None
        store.append(ev.ts_ns, conn_id, d, ptype, qos, dup, retain, packet_id, reason,
                     ev.wire_len, ev.frame, ex_id, resend, topic, payload_len)

    def _introduce(self, ev: MqttPacketEvent, c: ConnState, d: int, name: str) -> SessionState:
        """A packet that should not come yet: before CONNECT, before CONNACK, or after a refused
        CONNACK. Returns the session to book it on."""
        rec = c.rec
        if not c.connect_seen:
            rec.n_before_connect += 1
            # The capture decoder reports a missing CONNECT itself (before the packet).
            if rec.n_before_connect == 1 and "missing_connect" not in c.anomaly_counts:
                why = ("the capture started mid-session: no TCP handshake was seen"
                       if not rec.handshake_seen else "the TCP handshake was seen")
                self._anomaly(ev.ts_ns, "missing_connect",
                              f"{_DIRS[d]} {name} on a connection without CONNECT ({why}); "
                              f"MQTT version {rec.version or self.default_version} assumed"
                              + ("" if rec.version else " (default)"),
                              c, d, ev.frame)
        elif name == "PUBLISH" and c.refused and d == C2B:
            self._anomaly(ev.ts_ns, "publish_after_refused_connack",
                          f"PUBLISH after CONNACK refused the connection (code "
                          f"{rec.connack_code}) [MQTT-3.2.2-5]", c, d, ev.frame)
        elif name == "PUBLISH" and not c.connack_seen:
            self._anomaly(ev.ts_ns, "publish_before_connack",
                          f"{_DIRS[d]} PUBLISH before the CONNACK"
                          + (" [MQTT-3.2.0-1]" if d == B2C else
                             " (a client may, but it is lost if the connection is refused)"),
                          c, d, ev.frame)
        s = c.sess
        if s is None:
            s = self._session(f"conn:{c.conn_id}", None, anonymous=True)
            self._attach(c, s, ev.ts_ns)
        return s

    # -- anomalies --------------------------------------------------------------------------

    def _anomaly(self, ts: int, kind: str, detail: str, conn: ConnState | None,
                 direction: int | None, frame: int, packet_id: int | None = None,
                 ex_id: int | None = None, source: str = "analysis") -> AnomalyRecord | None:
        """Record an anomaly (returned), or only count it past the per-kind cap (None)."""
        counts = conn.anomaly_counts if conn is not None else self._global_anomalies
        n = counts.get(kind, 0)
        counts[kind] = n + 1
        if n >= self.max_anomalies_per_kind:
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return None
        sess = conn.sess.key if conn is not None and conn.sess is not None else None
        rec = AnomalyRecord(
            ts_ns=ts, kind=kind, detail=detail, source=source,
            conn_id=None if conn is None else conn.conn_id, session=sess,
            direction=None if direction is None else _DIRS[direction], frame=frame,
            packet_id=packet_id, ex_id=ex_id,
            severity="note" if kind in NOTE_KINDS else "anomaly")
        self.anomalies.append(rec)
        return rec

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> CorrelationResult:
        """Close what is still open (end of capture) and return the result."""
        t_end = self.t_last if self.t_last is not None else 0
        for c in list(self._conns.values()):
            if not c.closed:
                self._close(c, t_end, "end_of_capture", None)
        for s in self._by_code:
            for ex in list(s.open.values()):
                last = self._conns.get(ex.last_conn_id)
                if last is None or last.rec.transport_end == "end_of_capture":
                    self._end(s, ex, INCOMPLETE, NO_TS)
                else:
                    self._end(s, ex, ABANDONED, last.rec.t_close or NO_TS)
        if self.matcher is not None:
            self.matcher.finish()
        connections = sorted((c.rec for c in self._conns.values()), key=lambda r: r.conn_id)
        return CorrelationResult(
            connections=connections, sessions=[s.rec for s in self._by_code],
            reconnects=self.reconnects, anomalies=self.anomalies, exchanges=self.exchanges,
            q0=self.q0, packets=self.packets,
            deliveries=self.matcher.store if self.matcher is not None else None,
            tcp_retransmissions=self.tcp_retrans, topics=self.topics,
            session_keys=[s.key for s in self._by_code],
            client_ids=[s.rec.client_id for s in self._by_code], t_first=self.t_first,
            t_last=self.t_last, n_events=self.n_events, n_evicted=self.n_evicted,
            anomalies_suppressed=dict(self.suppressed), detail=self.detail)


def correlate(events: Iterable[Event], **options: Any) -> CorrelationResult:
    """Run a :class:`Correlator` over ``events``; ``options`` are its keyword arguments."""
    return Correlator(**options).feed_all(events)


_C2B = Direction.C2B
_B2C = Direction.B2C
_NO_LO = 2**63 - 1


def _dir(direction: Direction | None) -> int:
    return B2C if direction is Direction.B2C else C2B


_PTYPE_NAMES = {4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP"}

_FAST = None
if _accel.speedups is not None and hasattr(_accel.speedups, "correlate"):  # (a stale build)
    _FAST = _accel.speedups.correlate
    _accel.speedups.configure_analysis(
        MqttPacketEvent, ConnectionInfo, Publish, (PubAck, PubRec, PubRel, PubComp),
        (PingReq, PingResp), (PubAckReason, PubRecReason, PubRelReason, PubCompReason),
        ConnState, SessionState, OpenExchange, DoneIndex, RowStore, Connection, Session,
        Reconnect, DeliveryMatcher, _C2B, _B2C, NO_TS, OUTCOMES, STEPS, DELIVERY_STATUSES)

"""The QoS exchange rules: PUBLISH and its acknowledgements, one exchange per QoS delivery.

One of the correlator's trackers (:class:`~.correlate.Correlator` holds one
:class:`ExchangeTracker`; the session tracker ends exchanges through it); kept in its own module
because these are the rules users debug by, stated once here. Which acknowledgement answers which
PUBLISH, and which step it closes, is not written here but read from the one QoS transition table,
:data:`qosinspect.mqtt.transitions.ACK_STEPS`, which the broker and client endpoints
(:mod:`qosinspect.mqtt.qos`) follow too:

* **Key.** An exchange is keyed by (session, sending side, packet id, generation). Packet ids are
  independent per direction [MQTT-2.2.1-4]: a client's PUBLISH id 1 and the broker's PUBLISH
  id 1 are two exchanges. Acknowledgements find their exchange by the *PUBLISH* direction:
  PUBACK, PUBREC and PUBCOMP travel the other way, PUBREL the same way.
* **Generation.** A new PUBLISH (not DUP, or DUP with other content) on an id whose exchange has
  finished starts the next generation of that key [MQTT-2.2.1-3]: ids are reused all the time.
  (Generations are numbered when the tables are built: the order of ``ex_id`` within a key.)
* **Re-send.** The same (direction, packet id) sent again while open, with the same topic and
  payload, is an MQTT-level retransmission, with DUP [MQTT-3.3.1-1] or without (several clients
  forget it: reported as ``resend_without_dup``). A resent PUBREC or PUBREL is one too. PUBLISH
  with DUP=1 on an id already finished, with the same content, joins the finished exchange and
  counts in ``dup_after_complete`` (mosquitto re-sends a message whose PUBACK it lost to a dropped
  connection); so does a late acknowledgement (the last finished exchange of each packet id and
  direction is remembered: bounded by the id space). No step ever overwrites: every step keeps
  its first and last time and its count.
* **Reuse.** A different message on an id still in flight is ``packet_id_in_use`` [MQTT-2.2.1-3]:
  the old exchange ends as ``protocol_error`` and a new generation starts.
* **Wrong ack.** PUBACK for QoS 2, or PUBREC/PUBREL/PUBCOMP for QoS 1, is a protocol error
  [MQTT-4.3.2-*] [MQTT-4.3.3-*]: anomaly ``wrong_ack_type``, outcome ``protocol_error``.
* **Ends.** QoS 1 ends at PUBACK [MQTT-4.3.2-3]; QoS 2 at PUBCOMP [MQTT-4.3.3-5] or at a PUBREC
  with a failure reason code (>= 0x80, MQTT 5) [MQTT-4.3.3-4]; a PUBACK >= 0x80 is ``refused``.
  Completed on another connection than the first PUBLISH: ``complete_after_reconnect``.
* **Orphans.** An acknowledgement for an id with no exchange in the right direction, open or
  finished (and not abandoned with its session), is ``orphan_ack`` (normal for the first packets
  of a capture started mid-session).
* **Bounded.** At most ``max_open_per_session`` open exchanges per session (65535 by default,
  one direction's packet id space: the benchmark's real peers keep more than 30,000 QoS 2
  flows open in one session, so Suricata's 4096 would evict right answers) and
  ``max_open_total`` overall (100,000); past the first, the session's oldest open exchange is
  closed as ``evicted``, past the second the oldest tenth of all (by ``ex_id``: oldest first, as
  Zeek and the decoder's connection cap do); a ``too_many_exchanges`` anomaly with the frame
  says so and ``CorrelationResult.n_evicted`` counts them (``evictions`` in the report). A late
  acknowledgement still joins an evicted exchange (its row is remembered as any finished one).
  Exchanges open on a connection the decoder stopped following (its own cap) are ``evicted``
  too.
* **Joinable, then folded.** A late acknowledgement or DUP re-send joins one of the last
  ``max_joinable`` finished exchanges (131,072 by default: both directions' id space of one
  session), in blocks of :data:`FOLD_BLOCK`: when a new block of finished exchanges starts past
  that many, the oldest block leaves the window (its keys are forgotten: a later
  acknowledgement of one is an ``orphan_ack``). In report mode (``detail=False``) the rows live
  in a ring of that many slots, and a block that leaves is folded into the
  :class:`~.aggregate.Aggregate` (the report's counters and latency series) and its slots
  reused: memory is bounded whatever the capture's length; :meth:`ExchangeTracker.fold_rest`
  folds what is still in the window at the end. With ``detail=True`` every row is kept (the
  tables) and folded at the end, under the same rule of joining; with a ``sink`` too (a batch
  worker), the rows live in the ring as in report mode and a block that leaves the window is
  folded and handed to the sink (:class:`~.records.RowSink`) instead of kept.
* **Joinable for a time** (``joinable_ns``, 300 s by default for ``report`` and ``watch``
  alike, docs/watch.md says why; 0: no such bound): a whole block of the window whose newest
  exchange ended more than that long ago (packet time) leaves it too, and in report mode the
  memory of its rows is freed until the ring comes round to them again. So a window that
  would take hours to fill at a slow rate holds only the last minutes: memory stops growing
  once they are in, not once ``max_joinable`` exchanges have been seen.
* **QoS 0** publishes are exchanges too (one row, no acknowledgement, outcome ``complete``), so
  QoS 0 loss can be seen end to end (:mod:`.deliveries`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import Any, Final, final

from ..anomalies import AnomalyKind
from ..events import MqttPacketEvent
from ..mqtt.packets import Publish
from ..mqtt.transitions import ACK_STEPS, FlowState, Step, transition
from .aggregate import Aggregate
from .deliveries import DeliveryMatcher
from .diagnoses import Diagnoser
from .logs import DIRECTION_NAMES, AnomalyLog, PacketLog
from .records import (
    EXCHANGE_COLUMNS,
    NO_TS,
    OUTCOMES,
    Q0_COLUMNS,
    REPORT_EXCHANGE_COLUMNS,
    STEPS,
    Interner,
    RowSink,
    RowStore,
)
from .state import B2C, C2B, ConnState, DoneIndex, LatencyHistogram, OpenExchange, SessionState

__all__ = ["ABANDONED", "FOLD_BLOCK", "OPEN_AT_END", "ExchangeTracker"]

#: Finished exchanges that leave the joinable window (and, in report mode, are folded) at once.
FOLD_BLOCK: Final = 8192

OPEN, COMPLETE, COMPLETE_AFTER_RECONNECT, OPEN_AT_END, ABANDONED, REFUSED, PROTOCOL_ERROR, \
    EVICTED = range(len(OUTCOMES))
S_PUBLISH: Final = 0
S_PUBACK: Final = 1
S_PUBREC: Final = 2
S_PUBREL: Final = 3
S_PUBCOMP: Final = 4
assert tuple(Step) == (S_PUBLISH, S_PUBACK, S_PUBREC, S_PUBREL, S_PUBCOMP)
_DIR: Final = DIRECTION_NAMES


@final
class ExchangeTracker:
    """Open and finished exchanges (see the module docstring).

    It owns the exchange stores (``exchanges`` for QoS 1/2: every row with ``detail``, else the
    ring of the joinable ones; ``q0`` for QoS 0, empty in report mode), the topic interner and
    the caps; it folds what the report prints into ``aggregate``, writes anomalies to
    ``anomalies``, packets to ``packets`` (detail mode) and publications and deliveries to
    ``matcher``. ``on_end(session, exchange)`` is called when an exchange finishes (the
    exchange object is the tracker's: read it, do not keep it); a live view that wants only its
    times sets :attr:`ended_times` instead (no Python call per exchange).
    """

    def __init__(self, anomalies: AnomalyLog, packets: PacketLog | None,
                 matcher: DeliveryMatcher | None, *, detail: bool, max_open_per_session: int,
                 max_open_total: int, first_chunk_rows: int, max_chunk_rows: int,
                 aggregate: Aggregate, max_joinable: int = 131_072, joinable_ns: int = 0,
                 on_end: Callable[[SessionState, OpenExchange], None] | None = None,
                 sink: RowSink | None = None) -> None:
        self.anomalies = anomalies
        self.packets = packets
        self.matcher = matcher
        self.detail = detail
        self.aggregate = aggregate
        self.on_end = on_end
        #: When set (a live view's step latencies): qos, t_publish, t_puback, t_pubrec,
        #: t_pubrel, t_pubcomp of each exchange that finishes, appended one after the other
        #: (the reader empties it).
        self.ended_times: array[int] | None = None
        #: The joinable window: a whole number of blocks (see the module docstring).
        self.block = block = max(1, min(FOLD_BLOCK, max_joinable // 2))
        self.window = -(-max(max_joinable, 2 * block) // block) * block
        #: Detail rows handed to a sink as they leave the window (None: kept).
        self.sink = sink if detail else None
        #: Whether the finished rows live in a ring of ``window`` slots (report mode, or a sink).
        self.ring = not detail or sink is not None
        self.exchanges = (RowStore(EXCHANGE_COLUMNS, first_chunk_rows=first_chunk_rows,
                                   max_chunk_rows=max_chunk_rows) if not self.ring else
                          RowStore(EXCHANGE_COLUMNS if detail else REPORT_EXCHANGE_COLUMNS,
                                   first_chunk_rows=block, max_chunk_rows=block))
        #: ``session code << 17 | key`` of the finished exchanges in the window, by
        #: ``sequence % window``; ``n_finished`` exchanges finished, those before ``retired``
        #: left the window.
        self.keys = array("q")
        self.n_finished = 0
        self.retired = 0
        #: Whether :meth:`fold_rest` ran (detail mode folds every row then, once).
        self.folded = False
        #: The bound in packet time (0: none; see the module docstring), and the newest end
        #: of each block of the window, by its place in the ring.
        self.joinable_ns = joinable_ns
        self.block_last = array("q", [NO_TS]) * (self.window // block)
        self.last_end = NO_TS
        #: The counters of whole blocks of the window, by the block's place in the ring (a live
        #: snapshot's, :meth:`count_unfolded`): dropped when a late join changes one of its
        #: rows or the block is folded.
        self.counted: dict[int, Aggregate] = {}
        self.q0 = RowStore(Q0_COLUMNS, first_chunk_rows=first_chunk_rows,
                           max_chunk_rows=max_chunk_rows)
        if self.sink is not None:
            self.q0.spill_to(self.sink, "q0")
        self.topics = Interner()
        self.max_open_per_session = max_open_per_session
        self.max_open_total = max_open_total
        self.n_open_total = 0
        #: Exchanges no longer followed (outcome ``evicted``): past a cap, or on a connection
        #: the decoder stopped following.
        self.n_evicted = 0
        #: The sessions with an exchange open, by code, and the exchanges open by broker code
        #: and QoS (``broker * 3 + qos``): what a live snapshot and its stalls read, without
        #: walking every session seen (a watch sees new client ids for days).
        self.busy: dict[int, SessionState] = {}
        self.open_counts: dict[int, int] = {}
        #: Every session by code (the session tracker's list, shared): the total cap looks
        #: through them for the oldest open exchanges.
        self.sessions: list[SessionState] = []
        self.next_ex_id = 0
        #: Told of every QoS 1/2 exchange as it ends, to say why it was slow (set by the
        #: correlator; rows may be folded away later, so it sees each one here).
        self.diagnoser: Diagnoser | None = None
        #: Every completed exchange's latency (from its PUBLISH's first byte) is counted here,
        #: and only those over ``diagnose_floor`` (or with a time on the wire, or not
        #: completed) reach the diagnoser: one count per exchange in the common case.
        self.latencies = LatencyHistogram()
        self.diagnose_floor = 0

    # -- PUBLISH -------------------------------------------------------------------------------

    def publish(self, ev: MqttPacketEvent, ts: int, frame: int, c: ConnState, s: SessionState,
                d: int, p: Publish, wire: int = 0) -> None:
        """A PUBLISH; ``ts`` and ``frame`` are ``ev``'s, unpacked once by the caller (reading a
        NamedTuple's field by name is a dictionary lookup even in compiled code), ``wire`` its
        time on the wire (first byte to completion, ns)."""
        topic, payload, qos, dup_flag, retain_flag, pid, _ = p
        dup = 1 if dup_flag else 0
        retain = 1 if retain_flag else 0
        if qos == 0:
            ex_id = self.next_ex_id
            self.next_ex_id = ex_id + 1
            # report mode keeps no topic (a capture may hold millions of distinct ones)
            tcode = self.topics.code(topic) if self.detail else -1
            self.aggregate.q0(s.broker, dup)
            if self.detail:
                q0 = self.q0
                batch = q0.batch
                batch.append((ex_id, s.code, c.conn_id, d, tcode, len(payload),
                              retain, dup, frame, ts))
                if len(batch) >= q0.batch_rows:
                    q0.flush()
            if (packets := self.packets) is not None:
                packets.log(ev, c.conn_id, d, 3, 0, dup, retain, -1, -1, ex_id, 0,
                          tcode, len(payload))
            if dup:
                # [MQTT-3.3.1-2]: DUP must be 0 on every QoS 0 PUBLISH.
                self.anomalies.record(ts, AnomalyKind.DUP_ON_QOS0,
                                      "QoS 0 PUBLISH with DUP=1 [MQTT-3.3.1-2]", c, d, frame,
                                      None, ex_id)
            if d == C2B:
                s.rec.n_exchanges_c2b += 1
            else:
                s.rec.n_exchanges_b2c += 1
            if self.matcher is not None:
                self._match(d, hash((topic, payload)), ts, ex_id, 0, s, tcode, topic, retain_flag)
            return
        if (qos != 1 and qos != 2) or not pid:
            why = (f"PUBLISH with QoS {qos} [MQTT-3.3.1-4]" if qos not in (1, 2)
                   else "QoS > 0 PUBLISH without a packet id [MQTT-2.2.1-3]")
            kind = AnomalyKind.INVALID_QOS if qos not in (1, 2) else AnomalyKind.MALFORMED
            self.anomalies.record(ts, kind, why, c, d, frame, pid)
            if (packets := self.packets) is not None:
                packets.log(ev, c.conn_id, d, 3, qos, dup, retain,
                          pid if pid is not None else -1, -1, -1, 0, self.topics.code(topic),
                          len(payload))
            return
        key = (d << 16) | pid
        content = hash((topic, payload))
        ex = s.open.get(key)
        if ex is not None:
            if ex.content == content and ex.qos == qos:
                self._republish(ev, c, s, d, p, ex)
                return
            self.anomalies.record(ts, AnomalyKind.PACKET_ID_IN_USE,
                          f"{_DIR[d]} PUBLISH packet id {pid} reused for another message while "
                          f"exchange {ex.ex_id} is in flight [MQTT-2.2.1-3]", c, d, frame, pid,
                          ex.ex_id)
            self.end(s, ex, PROTOCOL_ERROR, ts)
        if dup and s.done is not None:
            done = s.done.get(key)
            if done is not None and self.exchanges.get("content", done) == content:
                self._dup_after_end(ev, c, s, d, p, done)
                return
        ex_id = self.next_ex_id
        self.next_ex_id = ex_id + 1
        tcode = self.topics.code(topic) if self.detail else -1
        ex = OpenExchange(ex_id, s.code, c.conn_id, d, qos, pid, tcode, len(payload),
                          retain, dup, frame, ts, content, key)
        ex.wire_publish = wire
        s.open[key] = ex
        self.n_open_total += 1
        if len(s.open) == 1:
            self.busy[s.code] = s
        slot = s.broker * 3 + qos
        self.open_counts[slot] = self.open_counts.get(slot, 0) + 1
        if d == C2B:
            s.rec.n_exchanges_c2b += 1
        else:
            s.rec.n_exchanges_b2c += 1
        if (packets := self.packets) is not None:
            packets.log(ev, c.conn_id, d, 3, qos, dup, ex.retain, pid, -1, ex_id, 0, tcode,
                      len(payload))
        if self.matcher is not None:
            self._match(d, content, ts, ex_id, qos, s, tcode, topic, retain_flag)
        if len(s.open) > self.max_open_per_session or self.n_open_total > self.max_open_total:
            self._evict(ts, frame, c, s)

    def _match(self, d: int, content: int, ts: int, ex_id: int, qos: int, s: SessionState,
               tcode: int, topic: str, retain: bool) -> None:
        matcher = self.matcher
        assert matcher is not None
        if d == C2B:
            matcher.publish(content, ts, ex_id, qos, s.code, s.broker, tcode, topic)
        else:
            matcher.deliver(content, ts, ex_id, qos, s.code, s.broker, retain)

    def _republish(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int,
                   p: Publish, ex: OpenExchange) -> None:
        """The same message on an open (direction, packet id): an MQTT-level re-send."""
        ts = ev.ts_ns
        ex.n_publish += 1
        s.rec.n_resends += 1
        ex.t_publish_last = ts
        if p.dup:
            ex.n_dup += 1
        else:
            self.anomalies.record(ts, AnomalyKind.RESEND_WITHOUT_DUP,
                          f"{_DIR[d]} PUBLISH packet id {ex.packet_id} sent again with DUP=0 "
                          "[MQTT-3.3.1-1]", c, d, ev.frame, ex.packet_id, ex.ex_id)
        if c.conn_id != ex.last_conn_id:
            ex.last_conn_id = c.conn_id
            ex.spans_reconnect = 1
        if c.reconnect is not None and ex.conn_id != c.conn_id:
            c.reconnect.redelivered_publish += 1
        if (packets := self.packets) is not None:
            packets.log(ev, c.conn_id, d, 3, ex.qos, 1 if p.dup else 0, 1 if p.retain else 0,
                      ex.packet_id, -1, ex.ex_id, 1, ex.topic, ex.payload_len)
        if d == B2C and ex.qos == 1 and self.matcher is not None:
            # A QoS 1 receiver treats every copy as a new publication [MQTT-4.3.2-5]: the
            # subscriber's application gets it again (a duplicate delivered).
            self.matcher.deliver(ex.content, ts, ex.ex_id, 1, s.code, s.broker, bool(p.retain))

    def _dup_after_end(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int,
                       p: Publish, row: int) -> None:
        """PUBLISH DUP=1 with the same message on an id whose exchange already finished."""
        st = self.exchanges
        ts = ev.ts_ns
        self.counted.pop(row // self.block, None)
        st.add("n_publish", row)
        s.rec.n_resends += 1
        st.add("n_dup", row)
        st.add("dup_after_complete", row)
        st.set("t_publish_last", row, ts)
        if st.get("last_conn_id", row) != c.conn_id:
            st.set("last_conn_id", row, c.conn_id)
            st.set("spans_reconnect", row, 1)
        if c.reconnect is not None and st.get("conn_id", row) != c.conn_id:
            c.reconnect.redelivered_publish += 1
        ex_id = st.get("ex_id", row)
        qos = st.get("qos", row)
        if (packets := self.packets) is not None:
            packets.log(ev, c.conn_id, d, 3, qos, 1, 1 if p.retain else 0, st.get("packet_id", row),
                      -1, ex_id, 1, st.get("topic", row), len(p.payload))
        if d == B2C and self.matcher is not None:
            # After its PUBACK/PUBCOMP the receiver takes the same id as a new publication
            # [MQTT-4.3.2-5] [MQTT-4.3.3-9]: delivered a second time.
            self.matcher.deliver(hash((p.topic, p.payload)), ts, ex_id, qos, s.code, s.broker,
                                 bool(p.retain))

    # -- acknowledgements -----------------------------------------------------------------------

    def ack(self, ev: MqttPacketEvent, ts: int, frame: int, c: ConnState, s: SessionState,
            d: int, ptype: int, pid: int, reason: int, wire: int = 0) -> None:
        """A PUBACK, PUBREC, PUBREL or PUBCOMP (``ts``, ``frame`` and ``wire`` as in
        :meth:`publish`)."""
        step_enum, want_qos, from_receiver, name = ACK_STEPS[ptype]
        step = int(step_enum)
        exd = d ^ 1 if from_receiver else d
        key = (exd << 16) | pid
        ex = s.open.get(key)
        if ex is None:
            done = s.done.get(key) if s.done is not None else None
            if (done is not None and self.exchanges.get("qos", done) == want_qos
                    and self.exchanges.get("outcome", done) != ABANDONED):
                self._late_ack(ev, c, s, d, ptype, step, pid, reason, done)
                return
            self.anomalies.record(ts, AnomalyKind.ORPHAN_ACK,
                          f"{_DIR[d]} {name} for packet id {pid}: no {_DIR[exd]} PUBLISH with "
                          "that id is in flight" + (" (capture started mid-session?)"
                                                    if not c.connect_seen else ""),
                          c, d, frame, pid)
            if (packets := self.packets) is not None:
                packets.log(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, -1, 0, -1, -1)
            return
        if c.conn_id != ex.last_conn_id:
            ex.last_conn_id = c.conn_id
            ex.spans_reconnect = 1
        resend = 0
        # The one transition table decides what this acknowledgement does to the flow.
        row = transition(_STATE[ex.qos][ex.last_step], ptype, reason)
        if row is None:
            if (packets := self.packets) is not None:
                packets.log(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, ex.ex_id, 0, ex.topic,
                          -1)
            self.anomalies.record(ts, AnomalyKind.WRONG_ACK_TYPE,
                          f"{name} for the QoS {ex.qos} exchange {ex.ex_id} "
                          f"(packet id {pid}): only QoS {want_qos} has it "
                          f"[{'MQTT-4.3.2-1' if ex.qos == 1 else 'MQTT-4.3.3-1'}]",
                          c, d, frame, pid, ex.ex_id)
            self.end(s, ex, PROTOCOL_ERROR, ts)
            return
        a = ex.acks
        if step == S_PUBACK:
            a.t_puback = ts
            a.wire_puback = wire
            a.t_puback_last = ts
            a.n_puback = 1
            a.puback_reason = reason
            ex.last_step = S_PUBACK
        elif step == S_PUBREC:
            if a.n_pubrec:
                resend = 1
            else:
                a.t_pubrec = ts
                a.wire_pubrec = wire
                a.pubrec_reason = reason
            a.t_pubrec_last = ts
            a.n_pubrec += 1
            if ex.last_step < S_PUBREC:
                ex.last_step = S_PUBREC
        elif step == S_PUBREL:
            if a.n_pubrel:
                resend = 1
            else:
                a.t_pubrel = ts
                a.wire_pubrel = wire
                a.pubrel_reason = reason
            a.t_pubrel_last = ts
            a.n_pubrel += 1
            if ex.last_step < S_PUBREL:
                ex.last_step = S_PUBREL
            if resend and c.reconnect is not None and ex.conn_id != c.conn_id:
                c.reconnect.redelivered_pubrel += 1
        else:
            a.t_pubcomp = ts
            a.wire_pubcomp = wire
            a.t_pubcomp_last = ts
            a.n_pubcomp = 1
            a.pubcomp_reason = reason
            ex.last_step = S_PUBCOMP
        if resend:
            s.rec.n_resends += 1
        if (packets := self.packets) is not None:
            packets.log(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, ex.ex_id, resend, ex.topic,
                      -1)
        nxt = row[0]
        if nxt is _FLOW_COMPLETE or nxt is _FLOW_REFUSED:
            end = COMPLETE if nxt is _FLOW_COMPLETE else REFUSED
            if end == COMPLETE and ex.spans_reconnect:
                end = COMPLETE_AFTER_RECONNECT
                if c.reconnect is not None:
                    c.reconnect.resumed += 1
            self.end(s, ex, end, ts)

    def _late_ack(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int,
                  ptype: int, step: int, pid: int, reason: int, row: int) -> None:
        """An acknowledgement for an exchange that already finished: it joins that exchange
        (a response to a DUP re-send, or a PUBREC/PUBREL/PUBCOMP sent again)."""
        st = self.exchanges
        name = STEPS[step]
        ts = ev.ts_ns
        self.counted.pop(row // self.block, None)
        if st.get("t_" + name, row) == NO_TS:
            st.set("t_" + name, row, ts)
            st.set(name + "_reason", row, reason)
        elif step in (S_PUBREC, S_PUBREL):
            s.rec.n_resends += 1
        st.set(f"t_{name}_last", row, ts)
        st.add("n_" + name, row)
        if st.get("last_conn_id", row) != c.conn_id:
            st.set("last_conn_id", row, c.conn_id)
            st.set("spans_reconnect", row, 1)
        if step == S_PUBREL and c.reconnect is not None and st.get("conn_id", row) != c.conn_id:
            c.reconnect.redelivered_pubrel += 1
        if (packets := self.packets) is not None:
            resend = 1 if step in (S_PUBREC, S_PUBREL) else 0
            packets.log(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, st.get("ex_id", row),
                      resend, st.get("topic", row), -1)

    # -- ending ---------------------------------------------------------------------------------

    def end(self, s: SessionState, ex: OpenExchange, outcome: int, ts: int) -> None:
        """Finish an open exchange: write its row and remember it under its key (joinable
        while it is in the window, see the module docstring)."""
        ex.outcome = outcome
        ex.t_end = ts
        if self.diagnoser is not None:
            if ts != NO_TS and outcome in (COMPLETE, COMPLETE_AFTER_RECONNECT):
                latency = ts - ex.t_publish + ex.wire_publish
                self.latencies.add(latency)
                a = ex.steps
                if (latency >= self.diagnose_floor or ex.wire_publish or a.wire_puback
                        or a.wire_pubrec or a.wire_pubrel or a.wire_pubcomp):
                    self.diagnoser.exchange(ex)
            else:
                self.diagnoser.exchange(ex)
        key = ex.key
        del s.open[key]
        self.n_open_total -= 1
        if not s.open:
            del self.busy[s.code]
        self.open_counts[s.broker * 3 + ex.qos] -= 1
        seq = self.n_finished
        window = self.window
        block = self.block
        if self.joinable_ns:
            # whole blocks whose newest exchange ended more than joinable_ns ago leave now (an
            # exchange evicted without a time ended when the last one with a time did)
            if ts != NO_TS:
                self.last_end = ts
            now = self.last_end
            cutoff = now - self.joinable_ns
            while (self.retired + block <= seq
                   and self.block_last[self.retired % window // block] < cutoff):
                self._retire(self.retired, release=True)
            k = seq % window // block
            if seq % block == 0 or now > self.block_last[k]:
                self.block_last[k] = now
        if seq >= window and seq % block == 0 and self.retired <= seq - window:
            self._retire(seq - window)
        tag = (s.code << 17) | key
        store = self.exchanges
        if seq < window:
            self.keys.append(tag)
        else:
            self.keys[seq % window] = tag
        slot = seq % window if self.ring else seq
        row = ex.detail_row() if self.detail else ex.report_row(s.broker)
        if slot == seq:
            batch = store.batch  # RowStore.append, inlined: one list append per exchange
            batch.append(row)
            if len(batch) >= store.batch_rows:
                store.flush()
        else:
            store.put(slot, row)
        done = s.done
        if done is None:
            done = s.done = DoneIndex()
        done.put(key, slot)
        self.n_finished = seq + 1
        if (times := self.ended_times) is not None:
            times.extend((ex.qos, ex.t_publish, ex.t_puback, ex.t_pubrec, ex.t_pubrel,
                          ex.t_pubcomp))
        if self.on_end is not None:
            self.on_end(s, ex)

    def _retire(self, start: int, *, release: bool = False) -> None:
        """The block of finished exchanges from sequence ``start`` leaves the window: its keys
        are forgotten and, in report mode (or with a sink), its rows folded (and handed to the
        sink) and their slots reused next (or, with ``release``, their memory freed until then:
        retired by age, not by a new row)."""
        window = self.window
        keys = self.keys
        sessions = self.sessions
        ring = self.ring
        for seq in range(start, start + self.block):
            tag = keys[seq % window]
            code = tag >> 17
            if code < len(sessions):
                done = sessions[code].done
                if done is not None:
                    done.forget(tag & 0x1FFFF, seq % window if ring else seq)
        if ring:
            lo = start % window
            self.counted.pop(lo // self.block, None)
            self._leave(self.exchanges.slice(lo, lo + self.block))
            if release:
                self.exchanges.release(lo)
        self.retired = start + self.block

    def unfolded(self) -> Iterator[Any]:
        """The finished exchanges not folded yet, as numpy row arrays: in report mode those
        still in the window, with ``detail`` every row (folded only at the end)."""
        store = self.exchanges
        if not self.ring:
            if not self.folded:
                yield from store.chunks()
            return
        # a block at a time (a chunk of the ring: a view, so folding copies a block at most)
        for lo, n in self._window_parts():
            yield store.slice(lo, lo + n)

    def _window_parts(self) -> list[tuple[int, int]]:
        """Report mode: the window's finished exchanges not folded yet, as (first slot, rows)
        within one block each, oldest first."""
        window, block = self.window, self.block
        out = []
        seq = self.retired
        while seq < self.n_finished:
            lo = seq % window
            n = min(block - lo % block, self.n_finished - seq)
            out.append((lo, n))
            seq += n
        return out

    def count_unfolded(self, into: Aggregate, brokers: list[int]) -> None:
        """Count (no latency series) the finished exchanges not folded yet into ``into``: a
        live snapshot, every second. In report mode a whole block of the window is counted
        once and its counters kept until a late join changes one of its rows or it is folded,
        so a snapshot counts the newest block's rows, not the whole window's."""
        if self.detail:
            for rows in self.unfolded():
                into.fold(rows, brokers, series=False)
            return
        block = self.block
        for lo, n in self._window_parts():
            if n < block:
                into.fold(self.exchanges.slice(lo, lo + n), brokers, series=False)
            else:
                counted = self.counted.get(lo // block)
                if counted is None:
                    counted = self.counted[lo // block] = Aggregate()
                    counted.fold(self.exchanges.slice(lo, lo + n), brokers, series=False)
                into.merge(counted)

    def fold_rest(self) -> None:
        """Fold every finished exchange not folded yet (the end of the input: none can be
        joined any more)."""
        for rows in self.unfolded():
            self._leave(rows)
        self.retired = self.n_finished
        self.folded = True

    def _leave(self, rows: Any) -> None:
        """Finished rows that can no longer change: folded, and handed to the sink if any."""
        if self.sink is not None:
            self.sink.take("exchanges", rows)
        self.aggregate.fold(rows, [s.broker for s in self.sessions] if self.detail else None)

    def end_all(self, s: SessionState, outcome: int, ts: int) -> int:
        """Finish every open exchange of a session with one outcome; returns how many."""
        n = len(s.open)
        if n:
            for ex in list(s.open.values()):
                self.end(s, ex, outcome, ts)
            # an emptied dict keeps its table: a fresh one is a quarter of it (100,000 closed
            # connections with an exchange each, issue 11 §9)
            s.open = {}
        return n

    def evict_all(self, s: SessionState, ts: int) -> int:
        """Stop following every open exchange of a session (its connection is no longer
        followed: the decoder's cap on connections): outcome ``evicted``, counted."""
        n = self.end_all(s, EVICTED, ts)
        self.n_evicted += n
        return n

    def _evict(self, ts: int, frame: int, c: ConnState, s: SessionState) -> None:
        """Past a cap (see the module docstring): the session's oldest open exchange when the
        session holds more than ``max_open_per_session``; the oldest tenth of all open
        exchanges when there are more than ``max_open_total`` (as the decoder's cap on
        connections evicts the least recently active tenth: one scan per tenth, no per-exchange
        bookkeeping). Each said by a ``too_many_exchanges`` anomaly with the frame."""
        if len(s.open) > self.max_open_per_session:
            oldest = next(iter(s.open.values()))
            self.n_evicted += 1
            self.anomalies.record(ts, AnomalyKind.TOO_MANY_EXCHANGES,
                          f"more than {self.max_open_per_session} open exchanges in the "
                          f"session: the oldest ({_DIR[oldest.direction]} packet id "
                          f"{oldest.packet_id}, exchange {oldest.ex_id}) is no longer followed",
                          c, oldest.direction, frame, oldest.packet_id, oldest.ex_id)
            self.end(s, oldest, EVICTED, NO_TS)
        if self.n_open_total <= self.max_open_total:
            return
        victims = sorted(((ex.ex_id, ex, sess) for sess in self.sessions
                          for ex in sess.open.values()), key=_first)
        victims = victims[:max(1, len(victims) // 10)]
        for _, ex, sess in victims:
            self.end(sess, ex, EVICTED, NO_TS)
        self.n_evicted += len(victims)
        self.anomalies.record(ts, AnomalyKind.TOO_MANY_EXCHANGES,
                      f"more than {self.max_open_total} open exchanges in all: the "
                      f"{len(victims)} oldest (exchanges {victims[0][0]} to {victims[-1][0]}) "
                      "are no longer followed", c, None, frame)


def _first(item: tuple[int, OpenExchange, SessionState]) -> int:
    return item[0]


_FLOW_COMPLETE: Final = FlowState.COMPLETE
_FLOW_REFUSED: Final = FlowState.REFUSED
#: The flow state of an open exchange, by QoS and the last step seen (the table's states).
_STATE: Final = (
    (),
    (FlowState.WAIT_PUBACK,) * 5,
    (FlowState.WAIT_PUBREC, FlowState.WAIT_PUBREC, FlowState.WAIT_PUBREL,
     FlowState.WAIT_PUBCOMP, FlowState.WAIT_PUBCOMP),
)

"""The QoS exchange rules: PUBLISH and its acknowledgements, one exchange per QoS delivery.

Part of the correlator (:class:`~.correlate.Correlator` inherits :class:`ExchangeTracker`); kept
in its own module because these are the rules users debug by, stated once here:

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
* **Bounded.** At most ``max_open_per_session`` open exchanges per session and ``max_open_total``
  overall; past either, the session's oldest open exchange is closed as ``evicted`` and a
  ``too_many_exchanges`` anomaly says so.
* **QoS 0** publishes are exchanges too (one row, no acknowledgement, outcome ``complete``), so
  QoS 0 loss can be seen end to end (:mod:`.deliveries`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mqtt.packets import Publish
from .records import (
    NO_TS,
    OUTCOMES,
    STEPS,
    AnomalyRecord,
    Interner,
    RowStore,
)
from .state import B2C, C2B, ConnState, OpenExchange, SessionState

if TYPE_CHECKING:
    from ..events import MqttPacketEvent
    from .deliveries import DeliveryMatcher

__all__ = ["ExchangeTracker"]

OPEN, COMPLETE, COMPLETE_AFTER_RECONNECT, INCOMPLETE, ABANDONED, REFUSED, PROTOCOL_ERROR, \
    EVICTED = range(len(OUTCOMES))
S_PUBLISH, S_PUBACK, S_PUBREC, S_PUBREL, S_PUBCOMP = range(len(STEPS))
BATCH = RowStore.BATCH
#: packet type -> (step, the QoS it belongs to, is it sent by the PUBLISH's receiver)
_ACKS = {4: (S_PUBACK, 1, True), 5: (S_PUBREC, 2, True), 6: (S_PUBREL, 2, False),
         7: (S_PUBCOMP, 2, True)}
_DIR = ("c2b", "b2c")


class ExchangeTracker:
    """The exchange half of the correlator (see the module docstring)."""

    # Provided by the correlator.
    detail: bool
    exchanges: RowStore
    q0: RowStore
    packets: RowStore | None
    topics: Interner
    matcher: DeliveryMatcher | None
    max_open_per_session: int
    max_open_total: int
    n_open_total: int
    n_evicted: int
    next_ex_id: int

    def _anomaly(self, ts: int, kind: str, detail: str, conn: ConnState | None,
                 direction: int | None, frame: int, packet_id: int | None = None,
                 ex_id: int | None = None) -> AnomalyRecord | None:
        raise NotImplementedError  # implemented by the correlator

    def _pkt(self, ev: MqttPacketEvent, conn_id: int, d: int, ptype: int, qos: int, dup: int,
             retain: int, packet_id: int, reason: int, ex_id: int, resend: int, topic: int,
             payload_len: int) -> None:
        raise NotImplementedError  # implemented by the correlator

    # -- PUBLISH -------------------------------------------------------------------------------

    def _publish(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int,
                 p: Publish) -> None:
        ts = ev.ts_ns
        qos = p.qos
        topic = p.topic
        payload = p.payload
        dup = 1 if p.dup else 0
        if qos == 0:
            ex_id = self.next_ex_id
            self.next_ex_id = ex_id + 1
            # report mode keeps no topic (a capture may hold millions of distinct ones)
            tcode = self.topics.code(topic) if self.detail else -1
            batch = self.q0.batch
            if self.detail:
                batch.append((ex_id, s.code, c.conn_id, d, tcode, len(payload),
                              1 if p.retain else 0, dup, ev.frame, ts))
            else:
                batch.append((dup,))
            if len(batch) >= BATCH:
                self.q0.flush()
            if self.packets is not None:
                self._pkt(ev, c.conn_id, d, 3, 0, dup, 1 if p.retain else 0, -1, -1, ex_id, 0,
                          tcode, len(payload))
            if dup:
                # [MQTT-3.3.1-2]: DUP must be 0 on every QoS 0 PUBLISH.
                self._anomaly(ts, "dup_on_qos0", "QoS 0 PUBLISH with DUP=1 [MQTT-3.3.1-2]", c, d,
                              ev.frame, None, ex_id)
            if d == C2B:
                s.rec.n_exchanges_c2b += 1
            else:
                s.rec.n_exchanges_b2c += 1
            if self.matcher is not None:
                self._match(d, hash((topic, payload)), ts, ex_id, 0, s, tcode, topic, p.retain)
            return
        pid = p.packet_id
        if (qos != 1 and qos != 2) or not pid:
            why = (f"PUBLISH with QoS {qos} [MQTT-3.3.1-4]" if qos not in (1, 2)
                   else "QoS > 0 PUBLISH without a packet id [MQTT-2.2.1-3]")
            self._anomaly(ts, "invalid_qos" if qos not in (1, 2) else "malformed", why, c, d,
                          ev.frame, pid)
            if self.packets is not None:
                self._pkt(ev, c.conn_id, d, 3, qos, dup, 1 if p.retain else 0,
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
            self._anomaly(ts, "packet_id_in_use",
                          f"{_DIR[d]} PUBLISH packet id {pid} reused for another message while "
                          f"exchange {ex.ex_id} is in flight [MQTT-2.2.1-3]", c, d, ev.frame, pid,
                          ex.ex_id)
            self._end(s, ex, PROTOCOL_ERROR, ts)
        if dup:
            done = s.done.get(key)
            if done is not None and self.exchanges.get("content", done) == content:
                self._dup_after_end(ev, c, s, d, p, done)
                return
        ex_id = self.next_ex_id
        self.next_ex_id = ex_id + 1
        tcode = self.topics.code(topic) if self.detail else -1
        ex = OpenExchange(ex_id, s.code, c.conn_id, d, qos, pid, tcode, len(payload),
                          1 if p.retain else 0, dup, ev.frame, ts, content, key)
        s.open[key] = ex
        self.n_open_total += 1
        if d == C2B:
            s.rec.n_exchanges_c2b += 1
        else:
            s.rec.n_exchanges_b2c += 1
        if self.packets is not None:
            self._pkt(ev, c.conn_id, d, 3, qos, dup, ex.retain, pid, -1, ex_id, 0, tcode,
                      len(payload))
        if self.matcher is not None:
            self._match(d, content, ts, ex_id, qos, s, tcode, topic, p.retain)
        if len(s.open) > self.max_open_per_session or self.n_open_total > self.max_open_total:
            self._evict(ts, c, s)

    def _match(self, d: int, content: int, ts: int, ex_id: int, qos: int, s: SessionState,
               tcode: int, topic: str, retain: bool) -> None:
        matcher = self.matcher
        assert matcher is not None
        if d == C2B:
            matcher.publish(content, ts, ex_id, qos, s.code, tcode, topic)
        else:
            matcher.deliver(content, ts, ex_id, qos, s.code, retain)

    def _republish(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int,
                   p: Publish, ex: OpenExchange) -> None:
        """The same message on an open (direction, packet id): an MQTT-level re-send."""
        ts = ev.ts_ns
        ex.n_publish += 1
        ex.t_publish_last = ts
        if p.dup:
            ex.n_dup += 1
        else:
            self._anomaly(ts, "resend_without_dup",
                          f"{_DIR[d]} PUBLISH packet id {ex.packet_id} sent again with DUP=0 "
                          "[MQTT-3.3.1-1]", c, d, ev.frame, ex.packet_id, ex.ex_id)
        if c.conn_id != ex.last_conn_id:
            ex.last_conn_id = c.conn_id
            ex.spans_reconnect = 1
        if c.reconnect is not None and ex.conn_id != c.conn_id:
            c.reconnect.redelivered_publish += 1
        if self.packets is not None:
            self._pkt(ev, c.conn_id, d, 3, ex.qos, 1 if p.dup else 0, 1 if p.retain else 0,
                      ex.packet_id, -1, ex.ex_id, 1, ex.topic, ex.payload_len)
        if d == B2C and ex.qos == 1 and self.matcher is not None:
            # A QoS 1 receiver treats every copy as a new publication [MQTT-4.3.2-5]: the
            # subscriber's application gets it again (a duplicate delivered).
            self.matcher.deliver(ex.content, ts, ex.ex_id, 1, s.code, bool(p.retain))

    def _dup_after_end(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int,
                       p: Publish, row: int) -> None:
        """PUBLISH DUP=1 with the same message on an id whose exchange already finished."""
        st = self.exchanges
        ts = ev.ts_ns
        st.add("n_publish", row)
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
        if self.packets is not None:
            self._pkt(ev, c.conn_id, d, 3, qos, 1, 1 if p.retain else 0, st.get("packet_id", row),
                      -1, ex_id, 1, st.get("topic", row), len(p.payload))
        if d == B2C and self.matcher is not None:
            # After its PUBACK/PUBCOMP the receiver takes the same id as a new publication
            # [MQTT-4.3.2-5] [MQTT-4.3.3-9]: delivered a second time.
            self.matcher.deliver(hash((p.topic, p.payload)), ts, ex_id, qos, s.code,
                                 bool(p.retain))

    # -- acknowledgements -----------------------------------------------------------------------

    def _ack(self, ev: MqttPacketEvent, c: ConnState, s: SessionState, d: int, ptype: int,
             pid: int, reason: int) -> None:
        step, want_qos, from_receiver = _ACKS[ptype]
        exd = d ^ 1 if from_receiver else d
        key = (exd << 16) | pid
        ts = ev.ts_ns
        ex = s.open.get(key)
        if ex is None:
            done = s.done.get(key)
            if (done is not None and self.exchanges.get("qos", done) == want_qos
                    and self.exchanges.get("outcome", done) != ABANDONED):
                self._late_ack(ev, c, d, ptype, step, pid, reason, done)
                return
            name = _NAMES[ptype]
            self._anomaly(ts, "orphan_ack",
                          f"{_DIR[d]} {name} for packet id {pid}: no {_DIR[exd]} PUBLISH with "
                          "that id is in flight" + (" (capture started mid-session?)"
                                                    if not c.connect_seen else ""),
                          c, d, ev.frame, pid)
            if self.packets is not None:
                self._pkt(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, -1, 0, -1, -1)
            return
        if c.conn_id != ex.last_conn_id:
            ex.last_conn_id = c.conn_id
            ex.spans_reconnect = 1
        resend = 0
        if ex.qos != want_qos:
            if self.packets is not None:
                self._pkt(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, ex.ex_id, 0, ex.topic,
                          -1)
            self._anomaly(ts, "wrong_ack_type",
                          f"{_NAMES[ptype]} for the QoS {ex.qos} exchange {ex.ex_id} "
                          f"(packet id {pid}): only QoS {want_qos} has it "
                          f"[{'MQTT-4.3.2-1' if ex.qos == 1 else 'MQTT-4.3.3-1'}]",
                          c, d, ev.frame, pid, ex.ex_id)
            self._end(s, ex, PROTOCOL_ERROR, ts)
            return
        if step == S_PUBACK:
            ex.t_puback = ts
            ex.t_puback_last = ts
            ex.n_puback = 1
            ex.puback_reason = reason
            ex.last_step = S_PUBACK
            end = REFUSED if reason >= 0x80 else COMPLETE
        elif step == S_PUBREC:
            if ex.n_pubrec:
                resend = 1
            else:
                ex.t_pubrec = ts
                ex.pubrec_reason = reason
            ex.t_pubrec_last = ts
            ex.n_pubrec += 1
            if ex.last_step < S_PUBREC:
                ex.last_step = S_PUBREC
            # [MQTT-4.3.3-4]: a PUBREC with a failure reason code ends the flow (MQTT 5).
            end = REFUSED if reason >= 0x80 else OPEN
        elif step == S_PUBREL:
            if ex.n_pubrel:
                resend = 1
            else:
                ex.t_pubrel = ts
                ex.pubrel_reason = reason
            ex.t_pubrel_last = ts
            ex.n_pubrel += 1
            if ex.last_step < S_PUBREL:
                ex.last_step = S_PUBREL
            if resend and c.reconnect is not None and ex.conn_id != c.conn_id:
                c.reconnect.redelivered_pubrel += 1
            end = OPEN
        else:
            ex.t_pubcomp = ts
            ex.t_pubcomp_last = ts
            ex.n_pubcomp = 1
            ex.pubcomp_reason = reason
            ex.last_step = S_PUBCOMP
            end = REFUSED if reason >= 0x80 else COMPLETE
        if self.packets is not None:
            self._pkt(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, ex.ex_id, resend, ex.topic,
                      -1)
        if end != OPEN:
            if end == COMPLETE and ex.spans_reconnect:
                end = COMPLETE_AFTER_RECONNECT
                if c.reconnect is not None:
                    c.reconnect.resumed += 1
            self._end(s, ex, end, ts)

    def _late_ack(self, ev: MqttPacketEvent, c: ConnState, d: int, ptype: int, step: int,
                  pid: int, reason: int, row: int) -> None:
        """An acknowledgement for an exchange that already finished: it joins that exchange
        (a response to a DUP re-send, or a PUBREC/PUBREL/PUBCOMP sent again)."""
        st = self.exchanges
        name = STEPS[step]
        ts = ev.ts_ns
        if st.get("t_" + name, row) == NO_TS:
            st.set("t_" + name, row, ts)
            st.set(name + "_reason", row, reason)
        st.set(f"t_{name}_last", row, ts)
        st.add("n_" + name, row)
        if st.get("last_conn_id", row) != c.conn_id:
            st.set("last_conn_id", row, c.conn_id)
            st.set("spans_reconnect", row, 1)
        if step == S_PUBREL and c.reconnect is not None and st.get("conn_id", row) != c.conn_id:
            c.reconnect.redelivered_pubrel += 1
        if self.packets is not None:
            resend = 1 if step in (S_PUBREC, S_PUBREL) else 0
            self._pkt(ev, c.conn_id, d, ptype, -1, 0, 0, pid, reason, st.get("ex_id", row),
                      resend, st.get("topic", row), -1)

    # -- ending ---------------------------------------------------------------------------------

    def _end(self, s: SessionState, ex: OpenExchange, outcome: int, ts: int) -> None:
        """Finish an open exchange: write its row and remember it under its key."""
        ex.outcome = outcome
        ex.t_end = ts
        key = ex.key
        del s.open[key]
        self.n_open_total -= 1
        store = self.exchanges
        batch = store.batch  # RowStore.append, inlined: one list append per exchange
        batch.append(store.getter(ex))
        s.done.put(key, store.packed + len(batch) - 1)
        if len(batch) >= BATCH:
            store.flush()

    def _end_all(self, s: SessionState, outcome: int, ts: int) -> int:
        """Finish every open exchange of a session with one outcome; returns how many."""
        n = len(s.open)
        for ex in list(s.open.values()):
            self._end(s, ex, outcome, ts)
        return n

    def _evict(self, ts: int, c: ConnState, s: SessionState) -> None:
        oldest = next(iter(s.open.values()))
        self.n_evicted += 1
        self._anomaly(ts, "too_many_exchanges",
                      f"more than {min(self.max_open_per_session, self.max_open_total)} open "
                      f"exchanges: the oldest ({_DIR[oldest.direction]} packet id "
                      f"{oldest.packet_id}, exchange {oldest.ex_id}) is no longer followed",
                      c, oldest.direction, 0, oldest.packet_id, oldest.ex_id)
        self._end(s, oldest, EVICTED, NO_TS)


_NAMES = {4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP"}

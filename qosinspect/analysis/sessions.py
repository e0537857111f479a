"""Connections and sessions: CONNECT, CONNACK, DISCONNECT, the transport's end, reconnections.

One of the correlator's trackers (:class:`~.correlate.Correlator` holds one
:class:`SessionTracker`, which ends exchanges through the :class:`~.exchanges.ExchangeTracker` it
is given); the rules, stated once here:

* **Connections** carry their CONNECT (client id, version, keep alive, clean start, session
  expiry) and CONNACK (result, session present, server keep alive). How one ended: a DISCONNECT
  wins (from the broker with 0x8E it is ``taken_over``, with 0x8D ``keepalive_expired``); then a
  session takeover (a new CONNECT with the same client id while it was open [MQTT-3.1.4-3]);
  then ``keepalive_expired`` when the client had been silent for more than 1.5 x the keep alive
  when the transport closed [MQTT-3.1.2-24]; then the transport's ``fin``, ``rst``, ``idle``,
  ``reused`` or ``end_of_capture``.
* **Brokers.** A broker is a server endpoint, address and port: every client that reaches the
  same address on the same port talks to one broker. Sessions, reconnections and deliveries are
  matched within one broker only (a capture may hold a local broker, a cloud one and a public
  test broker at once).
* **Sessions** are keyed by broker and client id and outlive connections [MQTT-4.1.0-1]. An
  empty client id or a connection without CONNECT (capture started mid-session) gets a session
  of its own, ``conn:<conn_id>``; an MQTT 5 Assigned Client Identifier re-keys it. The same
  client id on two brokers is named ``<client id>@<broker>`` (both of them) at the end.
* **Reconnections**: a CONNECT for a session that had a connection before. Its open exchanges
  stay open across the gap when the session persists (clean session 0, or MQTT 5 session expiry
  > 0), and a DUP re-send or PUBREL re-send on the new connection joins them [MQTT-4.4.0-1].
  They are ``abandoned`` when the session ends instead: the connection closes and the session
  does not persist, the new CONNECT has clean start [MQTT-3.1.2-4], or the CONNACK says session
  present 0 [MQTT-3.2.2-2].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

from ..anomalies import AnomalyKind
from ..events import ConnectionInfo, MqttPacketEvent
from ..mqtt.enums import Direction
from ..mqtt.packets import ConnAck, Connect, Disconnect, SubAck
from .deliveries import DeliveryMatcher
from .exchanges import ABANDONED, ExchangeTracker
from .logs import DIRECTION_NAMES, AnomalyLog
from .records import NO_TS, AnomalyRecord, Connection, Reconnect
from .state import ConnState, SessionState

__all__ = ["SessionTracker"]

_DIRS: Final = DIRECTION_NAMES
#: Transport ends after which the connection may still be up: the capture ended, or the decoder
#: stopped following it (``evicted``, its cap on connections open at once).
_NOT_ENDED: Final = frozenset({"end_of_capture", "evicted"})


@final
class SessionTracker:
    """Connections, sessions and reconnections (see the module docstring).

    ``conns`` holds every connection by id, ``sessions`` every session by key and ``by_code``
    by its code (the ``session`` column of the stores), ``reconnects`` what was found.
    """

    def __init__(self, anomalies: AnomalyLog, exchanges: ExchangeTracker,
                 matcher: DeliveryMatcher | None, *, default_version: int,
                 same_broker: tuple[tuple[str, ...], ...] = ()) -> None:
        self.anomalies = anomalies
        self.exchanges = exchanges
        self.matcher = matcher
        self.default_version = default_version
        self.conns: dict[int, ConnState] = {}
        #: (broker code, session key) -> session.
        self.sessions: dict[tuple[int, str], SessionState] = {}
        self.by_code: list[SessionState] = []
        #: Reconnections as rows: all of them, or the first ``max_reconnect_rows`` (report
        #: mode: the report lists the first; each is counted from its connection at the end).
        self.reconnects: list[Reconnect] = []
        self.max_reconnect_rows: int | None = None
        #: Hears of each reconnection as it is found (a live view).
        self.on_reconnect: Callable[[Reconnect], None] | None = None
        #: Broker endpoint (``host:port``) -> code, and the endpoints by code.
        self.broker_codes: dict[str, int] = {}
        self.brokers: list[str] = []
        #: Endpoint -> the endpoint that names its broker (``same_broker`` groups).
        self.alias: dict[str, str] = {ep: group[0] for group in same_broker for ep in group}
        #: Endpoint names, one string each (shared by every connection to it).
        self._names: dict[str, str] = {}

    def new_conn(self, info: ConnectionInfo, ts: int) -> ConnState:
        broker = str(info.broker)
        # one string per endpoint, not one per connection (100,000 connections to one broker)
        broker = self._names.setdefault(broker, broker)
        rec = Connection(conn_id=info.conn_id, client=str(info.client),
                         broker=broker, transport=info.transport, t_open=ts,
                         sides_known=info.sides_known)
        c = ConnState(rec, self.broker_code(rec.broker))
        self.conns[info.conn_id] = c
        return c

    def broker_code(self, endpoint: str) -> int:
        endpoint = self.alias.get(endpoint, endpoint)
        code = self.broker_codes.get(endpoint)
        if code is None:
            code = self.broker_codes[endpoint] = len(self.brokers)
            self.brokers.append(endpoint)
        return code

    def conn(self, info: ConnectionInfo, ts: int) -> ConnState:
        c = self.conns.get(info.conn_id)
        return c if c is not None else self.new_conn(info, ts)

    def session(self, key: str, client_id: str | None, anonymous: bool,
                broker: int) -> SessionState:
        s = self.sessions.get((broker, key))
        if s is None:
            s = SessionState(key, len(self.by_code), client_id, anonymous, broker,
                             self.brokers[broker])
            self.sessions[(broker, key)] = s
            self.by_code.append(s)
        return s

    def name_sessions(self, anomalies: list[AnomalyRecord]) -> None:
        """At the end: a client id used on several brokers names its sessions
        ``<client id>@<broker>`` (everywhere the name was written)."""
        count: dict[str, int] = {}
        for s in self.by_code:
            count[s.key] = count.get(s.key, 0) + 1
        renamed: dict[tuple[int, str], str] = {}
        for s in self.by_code:
            if count[s.key] > 1:
                new = f"{s.key}@{self.brokers[s.broker]}"
                renamed[(s.broker, s.key)] = new
                s.key = s.rec.session = new
        if not renamed:
            return
        for c in self.conns.values():
            if c.rec.session is not None:
                c.rec.session = renamed.get((c.broker, c.rec.session), c.rec.session)
        for rc in self.reconnects:
            prev = self.conns.get(rc.prev_conn_id)
            if prev is not None:
                rc.session = renamed.get((prev.broker, rc.session), rc.session)
        for a in anomalies:
            conn = self.conns.get(a.conn_id) if a.conn_id is not None else None
            if conn is not None and a.session is not None:
                a.session = renamed.get((conn.broker, a.session), a.session)

    def attach(self, c: ConnState, s: SessionState, ts: int) -> None:
        c.sess = s
        s.conn = c
        s.last_conn = c
        s.rec.conn_ids.append(c.conn_id)
        if s.rec.t_first is None:
            s.rec.t_first = ts
        c.interval = [ts, None]
        s.intervals.append(c.interval)
        c.rec.session = s.key
        c.rec.client_id = s.rec.client_id if c.rec.client_id is None else c.rec.client_id

    def connect(self, ev: MqttPacketEvent, c: ConnState, d: int, p: Connect) -> None:
        ts = ev.ts_ns
        rec = c.rec
        if c.connect_seen:
            self.anomalies.record(ts, AnomalyKind.SECOND_CONNECT, "a second CONNECT on the same "
                                  "connection [MQTT-3.1.0-2]", c, d, ev.frame)
            return
        c.connect_seen = True
        version = p.protocol_version
        rec.client_id = p.client_id
        rec.version = version
        rec.version_source = "connect"
        rec.keep_alive = p.keep_alive
        rec.clean_start = p.clean_start
        expiry = p.properties.session_expiry_interval if version >= 5 else None
        rec.session_expiry = expiry
        rec.username = p.username
        rec.password_present = p.password is not None
        rec.will_topic = p.will.topic if p.will is not None else None
        rec.t_connect = ts
        c.keep_alive = p.keep_alive
        # [MQTT-3.1.2-4] / MQTT 5 3.1.2.11.2: what survives this connection.
        persistent = (expiry or 0) > 0 if version >= 5 else not p.clean_start
        old = c.sess
        if p.client_id:
            s = self.session(p.client_id, p.client_id, anonymous=False, broker=c.broker)
        else:
            s = self.session(f"conn:{c.conn_id}", "", anonymous=True, broker=c.broker)
            s.rec.client_id = ""
        prev = s.conn if s.conn is not None and s.conn is not c else s.last_conn
        rc: Reconnect | None = None
        if prev is not None and prev is not c:
            if not prev.closed:
                prev.taken_over = True  # [MQTT-3.1.4-3]
                t_drop: int | None = ts
                cause: str | None = "taken_over"
                unfinished = [0, 0]
                for ex in s.open.values():
                    unfinished[ex.direction] += 1
            else:
                t_drop = prev.rec.t_close
                cause = prev.rec.end
                unfinished = [prev.unfinished_c2b, prev.unfinished_b2c]
            rc = Reconnect(session=s.key, client_id=s.rec.client_id, prev_conn_id=prev.conn_id,
                           next_conn_id=c.conn_id, t_drop=t_drop, t_connect=ts, cause=cause,
                           disconnect_reason=prev.rec.disconnect_reason,
                           clean_start=p.clean_start, unfinished_c2b=unfinished[0],
                           unfinished_b2c=unfinished[1], abandoned=s.abandoned_pending)
            s.abandoned_pending = 0
            if self.max_reconnect_rows is None or len(self.reconnects) < self.max_reconnect_rows:
                self.reconnects.append(rc)
            if self.on_reconnect is not None:
                self.on_reconnect(rc)
            c.reconnect = rc
        if old is not None and old is not s:
            # Packets came before the CONNECT: their anonymous session keeps them.
            old.conn = None
        s.persistent = persistent
        s.rec.persistent = persistent
        if p.clean_start:
            # The broker discards the previous session [MQTT-3.1.2-4] [MQTT-3.1.2-6].
            t_end = prev.rec.t_close if prev is not None and prev.rec.t_close else ts
            n = self.exchanges.end_all(s, ABANDONED, t_end)
            if rc is not None:
                rc.abandoned += n
            if self.matcher is not None:
                self.matcher.clear_session(s.code)
        c.rec.client_id = p.client_id
        self.attach(c, s, ts)

    def connack(self, ev: MqttPacketEvent, c: ConnState, p: ConnAck) -> None:
        rec = c.rec
        if c.connack_seen:
            return
        c.connack_seen = True
        rec.t_connack = ev.ts_ns
        rec.connack_code = int(p.reason_code)
        rec.session_present = bool(p.session_present)
        c.refused = p.reason_code != 0
        props = p.properties
        if props:
            ska = props.server_keep_alive
            if ska is not None:
                rec.server_keep_alive = ska
                c.keep_alive = ska
            assigned = props.assigned_client_identifier
            s0 = c.sess
            if (assigned and s0 is not None and s0.anonymous
                    and (s0.broker, assigned) not in self.sessions):
                del self.sessions[(s0.broker, s0.key)]
                s0.key = s0.rec.session = assigned
                s0.rec.client_id = assigned
                s0.anonymous = False
                self.sessions[(s0.broker, assigned)] = s0
                rec.session = assigned
            if assigned:
                rec.assigned_client_id = assigned
        if c.reconnect is not None:
            c.reconnect.session_present = bool(p.session_present)
        s = c.sess
        if s is not None and not c.refused and not p.session_present:
            # No session state on the broker: what the earlier connections left is dropped, on
            # the client too [MQTT-3.2.2-2] [MQTT-4.1.0-1].
            earlier = [ex for ex in s.open.values() if ex.conn_id != c.conn_id]
            prev = s.last_conn
            for ex in earlier:
                old = self.conns.get(ex.last_conn_id)
                t_end = old.rec.t_close if old is not None and old.rec.t_close else ev.ts_ns
                self.exchanges.end(s, ex, ABANDONED, t_end)
            if c.reconnect is not None:
                c.reconnect.abandoned += len(earlier)
            del prev

    def suback(self, ev: MqttPacketEvent, c: ConnState, d: int, p: SubAck) -> None:
        asked = c.pending_subs.pop(p.packet_id, None) if c.pending_subs is not None else None
        if asked is None:
            self.anomalies.record(ev.ts_ns, AnomalyKind.ORPHAN_ACK, f"SUBACK for packet id "
                                  f"{p.packet_id}: no SUBSCRIBE with that id is pending", c, d,
                                  ev.frame, p.packet_id)
            return
        if self.matcher is None or c.sess is None:
            return
        for (topic_filter, _, no_local), code in zip(asked, p.reason_codes, strict=False):
            if code < 0x80:
                self.matcher.subscribe(c.sess.code, c.sess.broker, topic_filter, int(code),
                                       no_local)

    def disconnect(self, ev: MqttPacketEvent, c: ConnState, d: int, p: Disconnect) -> None:
        rec = c.rec
        rec.disconnect_by = _DIRS[d]
        rec.t_disconnect = ev.ts_ns
        v5 = (rec.version or self.default_version) >= 5
        rec.disconnect_reason = int(p.reason_code) if v5 else None
        if v5 and c.sess is not None:
            expiry = p.properties.session_expiry_interval
            if expiry is not None:
                c.sess.persistent = c.sess.rec.persistent = expiry > 0

    def close(self, c: ConnState, ts: int, how: str, closed_by: Direction | None) -> None:
        if c.closed:
            return
        c.closed = True
        rec = c.rec
        rec.t_close = ts
        rec.transport_end = how
        rec.closed_by = None if closed_by is None else str(closed_by)
        if rec.disconnect_by is not None:
            reason = rec.disconnect_reason
            if rec.disconnect_by == "b2c" and reason == 0x8E:
                rec.end = "taken_over"
            elif rec.disconnect_by == "b2c" and reason == 0x8D:
                rec.end = "keepalive_expired"
            else:
                rec.end = "disconnect"
        elif c.taken_over:
            rec.end = "taken_over"
        elif (how not in _NOT_ENDED and c.keep_alive > 0 and c.t_last_c2b != NO_TS
              and (ts - c.t_last_c2b) * 2 > 3 * c.keep_alive * 10**9):
            rec.end = "keepalive_expired"  # [MQTT-3.1.2-24]
        else:
            rec.end = how
        # Reset before a single MQTT packet either way (nothing listening, a firewall, a proxy
        # refusing): an attempt, not a connection. TLS carries bytes we cannot read: not one.
        rec.attempt = (how == "rst" and rec.n_packets_c2b == 0 and rec.n_packets_b2c == 0
                       and rec.transport == "tcp")
        c.pending_subs = None
        c.pending_unsubs = None
        s = c.sess
        if s is None:
            return
        if c.interval is not None and how not in _NOT_ENDED:
            # (a connection still open at the end of the capture, or no longer followed by the
            # decoder, did not end: left open)
            c.interval[1] = ts
        if s.rec.t_last is None or ts > s.rec.t_last:
            s.rec.t_last = ts
        if s.conn is not c:
            return  # taken over: the session lives on in the new connection
        s.conn = None
        unfinished = [0, 0]
        for ex in s.open.values():
            unfinished[ex.direction] += 1
        c.unfinished_c2b, c.unfinished_b2c = unfinished
        rec.unfinished_at_end = unfinished[0] + unfinished[1]
        if how == "evicted":
            # The decoder stopped following the connection (its cap on connections open at
            # once): what was open on it is no longer followed either, as the exchange cap
            # would say (outcome ``evicted``, counted).
            self.exchanges.evict_all(s, ts)
        elif how != "end_of_capture" and (not s.persistent or s.anonymous):
            s.abandoned_pending += self.exchanges.end_all(s, ABANDONED, ts)


"""The broker's brain, pure: sessions, subscriptions, routing and retained messages.

No sockets, no clock: the asyncio server (:mod:`.server`) feeds decoded packets with ``now``
(ns) and collects, per connection, the packets to send and whether to close. The same engine
could be driven from a test or a replay. QoS flows per message are handled by
:class:`qosinspect.mqtt.session.Session` (one per client id), so every QoS rule lives in ``mqtt/``.

What the engine decides, with the statements that fix it:

- CONNACK is the first packet sent [MQTT-3.2.0-1]; a second CONNECT is a protocol error
  [MQTT-3.1.0-2]; an empty client id gets an assigned one (MQTT 5, or 3.1.1 clean session)
  [MQTT-3.1.3-6] or is rejected (0x02 / 0x85) [MQTT-3.1.3-8]; the same client id connecting
  again takes the session over, the old connection gets DISCONNECT 0x8E [MQTT-3.1.4-3].
- Clean start discards the session [MQTT-3.1.2-4], else it resumes with session present
  [MQTT-3.2.2-2] and unacked flows are resent [MQTT-4.4.0-1]. Session expiry: 3.1.1 clean
  session 0 never expires, 1 ends with the connection; MQTT 5 uses Session Expiry Interval, which
  DISCONNECT may change but not from 0 [MQTT-3.14.2-2].
- Routing: a message goes to each client with a matching subscription once, at the lower of the
  publish and (highest) subscription QoS [MQTT-3.8.4-8]; no-local [MQTT-3.8.3-3]; retain as
  published [MQTT-3.3.1-12] [MQTT-3.3.1-13]; subscription identifiers [MQTT-3.3.4-3]; a shared
  subscription delivers to one member of the group (round robin, online members first).
  Per-topic order holds because routing is synchronous and each session queue is FIFO.
- Retained: a retained PUBLISH replaces the topic's retained message [MQTT-3.3.1-5], an empty
  payload clears it [MQTT-3.3.1-6]; on subscribe it is sent with RETAIN=1 [MQTT-3.3.1-9] per
  retain handling 0/1/2 [MQTT-3.3.1-9..11]; never to shared subscriptions.
- Wills: published when the connection ends without DISCONNECT [MQTT-3.1.2-8] (or with MQTT 5
  reason 0x04), never after a normal DISCONNECT [MQTT-3.1.2-10]; MQTT 5 Will Delay defers it and
  a reconnection in time cancels it.
- Keep alive: no packet within 1.5 times the keep alive closes the connection [MQTT-3.1.2-22];
  ``max_keepalive`` caps it, announced as Server Keep Alive in MQTT 5 [MQTT-3.2.2-21].
- Backpressure: a publisher whose message went into an online subscriber's full queue is
  *blocked* (see :meth:`BrokerEngine.is_blocked`); the server stops reading from it. QoS 0 to a
  congested connection is dropped and counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import MQTTError, RemoteProtocolError
from ..mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
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
    Will,
)
from ..mqtt.properties import NO_PROPERTIES, Properties, PropertyId
from ..mqtt.session import Session
from ..mqtt.topics import parse_shared, topic_matches
from .auth import READ, WRITE, Authenticator

__all__ = ["BrokerConfig", "BrokerEngine", "BrokerSession", "ClientConn", "SubOptions"]

NS = 1_000_000_000
NEVER = 0xFFFFFFFF
_STRIP = (int(PropertyId.TOPIC_ALIAS), int(PropertyId.SUBSCRIPTION_IDENTIFIER))
_SUB_ID = int(PropertyId.SUBSCRIPTION_IDENTIFIER)


@dataclass
class BrokerConfig:
    """Limits and switches of the engine (the server adds listener settings)."""

    max_keepalive: int = 65535
    max_inflight: int = 20             # outbound window when the client sets no Receive Maximum
    receive_maximum: int = 100         # inbound QoS 2 flows we accept at once (announced, MQTT 5)
    max_queued_messages: int = 1000    # per online session before publishers are blocked
    max_offline_messages: int = 100_000
    topic_alias_maximum: int = 10
    deny_subscribe_code_v5: int = 0x87
    max_sessions: int = 100_000


@dataclass(frozen=True, slots=True)
class SubOptions:
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int | None = None


@dataclass(eq=False)
class BrokerSession:
    """The broker's state for one client id; outlives connections while it has not expired."""

    client_id: str
    state: Session
    subs: dict[str, SubOptions] = field(default_factory=dict)
    conn: ClientConn | None = None
    expiry_s: int = 0
    disconnected_ns: int | None = None


@dataclass(eq=False)
class ClientConn:
    """One network connection as the engine sees it; ``outbox`` is drained by the server."""

    conn_id: int
    version: int = 4
    connected: bool = False
    client_id: str = ""
    username: str | None = None
    keep_alive: int = 0
    last_rx_ns: int = 0
    will: Will | None = None
    session: BrokerSession | None = None
    outbox: list[Packet] = field(default_factory=list)
    close_reason: int | None = None
    closed: bool = False
    congested: bool = False           # set by the server when its write buffer is full
    blocked_on: set[BrokerSession] = field(default_factory=set)
    dropped_qos0: int = 0


class BrokerEngine:
    """Sessions, subscriptions, retained messages and routing (see the module docstring)."""

    def __init__(self, config: BrokerConfig | None = None,
                 auth: Authenticator | None = None) -> None:
        self.config = config or BrokerConfig()
        self.auth = auth or Authenticator(allow_anonymous=True)
        self.sessions: dict[str, BrokerSession] = {}
        self.retained: dict[str, tuple[Publish, int | None]] = {}
        self._exact: dict[str, dict[str, SubOptions]] = {}
        self._wild: dict[str, dict[str, SubOptions]] = {}
        self._shared: dict[tuple[str, str], dict[str, SubOptions]] = {}
        self._rr = itertools.count()
        self._conn_ids = itertools.count()
        self._assigned = itertools.count(1)
        self._wills: dict[str, tuple[Will, int, int]] = {}   # client id -> (will, due, version)
        self._dirty: dict[int, ClientConn] = {}
        self.conns: dict[int, ClientConn] = {}

    # -- driver interface -------------------------------------------------------------------------

    def open(self, now: int) -> ClientConn:
        conn = ClientConn(next(self._conn_ids), last_rx_ns=now)
        self.conns[conn.conn_id] = conn
        return conn

    def take_output(self) -> list[ClientConn]:
        """Connections with packets to send or a close pending, since the last call."""
        out = list(self._dirty.values())
        self._dirty.clear()
        return out

    def is_blocked(self, conn: ClientConn) -> bool:
        """Whether reading from ``conn`` must wait: it fed a full online queue."""
        if conn.blocked_on:
            conn.blocked_on = {s for s in conn.blocked_on
                               if s.conn is not None and s.state.over_limit}
        return bool(conn.blocked_on)

    def _send(self, conn: ClientConn, packets: list[Packet] | Packet) -> None:
        if conn.closed:
            return
        if isinstance(packets, list):
            conn.outbox.extend(packets)
        else:
            conn.outbox.append(packets)
        self._dirty[conn.conn_id] = conn

    def receive(self, conn: ClientConn, packet: Packet, now: int) -> None:
        """One packet from the client on ``conn``."""
        if conn.closed:
            return
        conn.last_rx_ns = now
        if isinstance(packet, Connect):
            if conn.connected:
                self.close(conn, 0x82, now)       # a second CONNECT [MQTT-3.1.0-2]
            else:
                self._connect(conn, packet, now)
            return
        if not conn.connected:
            self.close(conn, 0x82, now)           # the first packet must be CONNECT [MQTT-3.1.0-1]
            return
        try:
            if isinstance(packet, Publish):
                self._publish(conn, packet, now)
            elif isinstance(packet, PubAck | PubRec | PubRel | PubComp):
                assert conn.session is not None
                out = conn.session.state.receive(packet, now)
                self._send(conn, out.send)
            elif isinstance(packet, Subscribe):
                self._subscribe(conn, packet, now)
            elif isinstance(packet, Unsubscribe):
                self._unsubscribe(conn, packet)
            elif isinstance(packet, PingReq):
                self._send(conn, PingResp())          # [MQTT-3.12.4-1]
            elif isinstance(packet, Disconnect):
                self._disconnect(conn, packet, now)
            else:
                self.close(conn, 0x82, now)           # a packet only a server sends
        except (MQTTError, RemoteProtocolError) as exc:
            self.close(conn, exc.reason_code, now)

    def close(self, conn: ClientConn, reason: int | None, now: int, *,
              publish_will: bool = True) -> None:
        """End ``conn``: DISCONNECT with ``reason`` (MQTT 5, after CONNACK), will, session."""
        if conn.closed:
            return
        if reason is not None and conn.connected and conn.version >= 5:
            self._send(conn, Disconnect(reason))
        conn.close_reason = reason if reason is not None else 0
        self._dirty[conn.conn_id] = conn
        self._detach(conn, now, publish_will)
        conn.closed = True

    def connection_lost(self, conn: ClientConn, now: int) -> None:
        """The socket closed; without DISCONNECT this publishes the will [MQTT-3.1.2-8]."""
        if not conn.closed:
            self._detach(conn, now, True)
            conn.closed = True
        self.conns.pop(conn.conn_id, None)
        self._dirty.pop(conn.conn_id, None)

    def tick(self, now: int) -> None:
        """Keep alive (1.5x) [MQTT-3.1.2-22], due wills, expired sessions."""
        for conn in list(self.conns.values()):
            if conn.connected and conn.keep_alive and not conn.closed and \
                    now - conn.last_rx_ns > conn.keep_alive * NS * 3 // 2:
                self.close(conn, 0x8D, now)
        for cid, (will, due, version) in list(self._wills.items()):
            if now >= due:
                del self._wills[cid]
                self._publish_will(will, version, now)
        for sess in list(self.sessions.values()):
            if sess.conn is None and sess.disconnected_ns is not None and \
                    sess.expiry_s != NEVER and now >= sess.disconnected_ns + sess.expiry_s * NS:
                self._end_session(sess, now)

    # -- connect / disconnect ---------------------------------------------------------------------

    def _connect(self, conn: ClientConn, c: Connect, now: int) -> None:
        v5 = c.protocol_version >= 5
        conn.version = c.protocol_version
        code = self.auth.authenticate(c.username, c.password)
        if code:
            self._refuse(conn, (0x86 if code == 4 else 0x87) if v5 else code)
            return
        client_id = c.client_id
        assigned = None
        if not client_id:
            if c.protocol_version == 3 or (not v5 and not c.clean_start):
                self._refuse(conn, 0x02)          # [MQTT-3.1.3-8]
                return
            client_id = assigned = f"qosinspect-{next(self._assigned)}"
        if client_id not in self.sessions and len(self.sessions) >= self.config.max_sessions:
            self._refuse(conn, 0x97 if v5 else 0x03)
            return
        self._wills.pop(client_id, None)          # a reconnection cancels a delayed will
        old = self.sessions.get(client_id)
        if old is not None and old.conn is not None:
            self.close(old.conn, 0x8E, now)       # session takeover [MQTT-3.1.4-3]
            old = self.sessions.get(client_id)
        # 3.1.1: clean session 0 never expires, 1 ends with the connection
        v3_expiry = 0 if c.clean_start else NEVER
        expiry = (c.properties.session_expiry_interval or 0) if v5 else v3_expiry
        present = old is not None and not c.clean_start
        if old is not None and c.clean_start:
            self._end_session(old, now)           # [MQTT-3.1.2-4]
            old = None
        receive_max = (c.properties.receive_maximum if v5 else None) or self.config.max_inflight
        if old is None:
            sess = BrokerSession(client_id, Session(
                version=conn.version, receive_maximum=receive_max,
                our_receive_maximum=self.config.receive_maximum,
                max_queued=self.config.max_queued_messages,
                hard_limit=self.config.max_offline_messages))
            self.sessions[client_id] = sess
        else:
            sess = old
        sess.conn = conn
        sess.expiry_s = expiry
        sess.disconnected_ns = None
        conn.session = sess
        conn.client_id = client_id
        conn.username = c.username
        conn.connected = True
        conn.will = c.will
        keep_alive = c.keep_alive
        max_ka = self.config.max_keepalive
        if max_ka and (keep_alive == 0 or keep_alive > max_ka):
            keep_alive = max_ka if v5 or keep_alive else 0
        conn.keep_alive = keep_alive
        props = NO_PROPERTIES
        if v5:
            kw: dict[str, object] = {
                "receive_maximum": self.config.receive_maximum,
                "topic_alias_maximum": self.config.topic_alias_maximum,
            }
            if assigned:
                kw["assigned_client_identifier"] = assigned
            if keep_alive != c.keep_alive:
                kw["server_keep_alive"] = keep_alive
            props = Properties.of(**kw)
        self._send(conn, ConnAck(present, 0, props))          # [MQTT-3.2.0-1] [MQTT-3.2.2-2]
        self._send(conn, sess.state.connection_made(
            now, session_present=present, version=conn.version, receive_maximum=receive_max))

    def _refuse(self, conn: ClientConn, code: int) -> None:
        self._send(conn, ConnAck(False, code))   # [MQTT-3.2.2-4]: no session present
        conn.close_reason = code
        conn.closed = True

    def _disconnect(self, conn: ClientConn, d: Disconnect, now: int) -> None:
        sess = conn.session
        new_expiry = d.properties.session_expiry_interval if conn.version >= 5 else None
        if sess is not None and new_expiry is not None:
            if sess.expiry_s == 0 and new_expiry:
                self.close(conn, 0x82, now)       # [MQTT-3.14.2-2]
                return
            sess.expiry_s = new_expiry
        with_will = conn.version >= 5 and d.reason_code == 0x04
        if not with_will:
            conn.will = None                      # [MQTT-3.1.2-10]
        conn.close_reason = 0
        self._dirty[conn.conn_id] = conn
        self._detach(conn, now, with_will)
        conn.closed = True

    def _detach(self, conn: ClientConn, now: int, publish_will: bool) -> None:
        sess = conn.session
        if not conn.connected or sess is None:
            return
        will = conn.will if publish_will else None
        conn.will = None
        if sess.conn is conn:
            sess.conn = None
            sess.state.connection_lost()
            sess.disconnected_ns = now
        if will is not None:
            delay = will.properties.will_delay_interval or 0 if conn.version >= 5 else 0
            if delay and sess.expiry_s:
                self._wills[sess.client_id] = (will, now + delay * NS, conn.version)
            else:
                self._publish_will(will, conn.version, now)
        if sess.conn is None and sess.expiry_s == 0:
            self._end_session(sess, now)

    def _end_session(self, sess: BrokerSession, now: int) -> None:
        pending = self._wills.pop(sess.client_id, None)
        if pending is not None:
            self._publish_will(pending[0], pending[2], now)
        for topic_filter in list(sess.subs):
            self._unindex(sess.client_id, topic_filter)
        sess.subs.clear()
        sess.state.clear()
        if self.sessions.get(sess.client_id) is sess:
            del self.sessions[sess.client_id]

    def _publish_will(self, will: Will, version: int, now: int) -> None:
        props = will.properties.without(int(PropertyId.WILL_DELAY_INTERVAL))
        self._accept(Publish(will.topic, will.payload, will.qos, False, will.retain, None,
                             props), now, None)

    # -- publish ------------------------------------------------------------------------------

    def _publish(self, conn: ClientConn, p: Publish, now: int) -> None:
        assert conn.session is not None
        alias = p.properties.topic_alias if conn.version >= 5 and p.properties else None
        if alias is not None and alias > self.config.topic_alias_maximum:
            self.close(conn, 0x94, now)               # [MQTT-3.3.2-9]
            return
        allowed = self.auth.may(WRITE, p.topic, client_id=conn.client_id,
                                username=conn.username)
        out = conn.session.state.receive(p, now)
        if not allowed and conn.version >= 5 and p.qos:
            # refuse with 0x87: the flow ends there, so the QoS 2 id is not kept
            conn.session.state.receiver.awaiting_pubrel.pop(p.packet_id or 0, None)
            ack: Packet = PubAck(p.packet_id or 0, 0x87) if p.qos == 1 else \
                PubRec(p.packet_id or 0, 0x87)
            self._send(conn, ack)
            return
        if allowed and out.deliver:
            self._accept(p, now, conn)
        self._send(conn, out.send)

    def _accept(self, p: Publish, now: int, origin: ClientConn | None) -> None:
        """A message accepted from a publisher (or a will): retain, then route."""
        expiry = p.properties.message_expiry_interval if p.properties else None
        expires_ns = now + expiry * NS if expiry is not None else None
        props = p.properties.without(_STRIP[0]).without(_STRIP[1]) if p.properties else \
            NO_PROPERTIES
        msg = Publish(p.topic, p.payload, p.qos, False, p.retain, None, props)
        if p.retain:
            if p.payload:
                self.retained[p.topic] = (msg, expires_ns)    # [MQTT-3.3.1-5]
            else:
                self.retained.pop(p.topic, None)              # [MQTT-3.3.1-6]
        self._route(msg, now, expires_ns, origin)

    def _matching(self, topic: str) -> Iterator[dict[str, SubOptions]]:
        exact = self._exact.get(topic)
        if exact:
            yield exact
        for topic_filter, subs in self._wild.items():
            if topic_matches(topic_filter, topic):
                yield subs

    def _route(self, msg: Publish, now: int, expires_ns: int | None,
               origin: ClientConn | None) -> None:
        origin_id = origin.client_id if origin is not None else None
        targets: dict[str, tuple[int, list[int], bool]] = {}
        for subs in self._matching(msg.topic):
            for client_id, opt in subs.items():
                if opt.no_local and client_id == origin_id:
                    continue                                   # [MQTT-3.8.3-3]
                self._merge(targets, client_id, opt)
        for (_group, topic_filter), members in self._shared.items():
            if members and topic_matches(topic_filter, msg.topic):
                chosen = self._pick_member(members)
                self._merge(targets, chosen, members[chosen])
        for client_id, (qos, sub_ids, rap) in targets.items():
            sess = self.sessions.get(client_id)
            if sess is None:
                continue
            conn = sess.conn
            username = conn.username if conn is not None else None
            if self.auth.acl is not None and not self.auth.may(
                    READ, msg.topic, client_id=client_id, username=username):
                continue
            out_qos = min(msg.qos, qos)                          # [MQTT-3.8.4-8]
            props = msg.properties
            if sub_ids:
                props = Properties((*props.items, *((_SUB_ID, s) for s in sub_ids)))
            out = msg._replace(qos=out_qos, retain=msg.retain and rap, properties=props)
            if out_qos == 0 and conn is not None and conn.congested:
                conn.dropped_qos0 += 1
                continue
            packets = sess.state.publish(out, now, expires_ns=expires_ns)
            if conn is not None:
                self._send(conn, packets)
                if out_qos and origin is not None and sess.state.over_limit:
                    origin.blocked_on.add(sess)

    @staticmethod
    def _merge(targets: dict[str, tuple[int, list[int], bool]], client_id: str,
               opt: SubOptions) -> None:
        qos, sub_ids, rap = targets.get(client_id, (0, [], False))
        if opt.sub_id is not None:
            sub_ids = [*sub_ids, opt.sub_id]
        targets[client_id] = (max(qos, opt.qos), sub_ids, rap or opt.retain_as_published)

    def _pick_member(self, members: dict[str, SubOptions]) -> str:
        names = list(members)
        online = [n for n in names if (s := self.sessions.get(n)) is not None and s.conn]
        pool = online or names
        return pool[next(self._rr) % len(pool)]

    # -- subscribe ------------------------------------------------------------------------------

    def _index_for(self, topic_filter: str) -> dict[str, SubOptions]:
        shared = parse_shared(topic_filter)
        if shared is not None:
            return self._shared.setdefault((shared.share_name, shared.topic_filter), {})
        table = self._wild if ("+" in topic_filter or "#" in topic_filter) else self._exact
        return table.setdefault(topic_filter, {})

    def _unindex(self, client_id: str, topic_filter: str) -> None:
        shared = parse_shared(topic_filter)
        if shared is not None:
            key = (shared.share_name, shared.topic_filter)
            members = self._shared.get(key)
            if members is not None:
                members.pop(client_id, None)
                if not members:
                    del self._shared[key]
            return
        table = self._wild if ("+" in topic_filter or "#" in topic_filter) else self._exact
        subs = table.get(topic_filter)
        if subs is not None:
            subs.pop(client_id, None)
            if not subs:
                del table[topic_filter]

    def _subscribe(self, conn: ClientConn, s: Subscribe, now: int) -> None:
        sess = conn.session
        assert sess is not None
        sub_ids = s.properties.subscription_identifiers if conn.version >= 5 else []
        sub_id = sub_ids[0] if sub_ids else None
        codes: list[int] = []
        retained: list[tuple[str, SubOptions]] = []
        for sub in s.subscriptions:
            if not self.auth.may(READ, sub.topic_filter, client_id=conn.client_id,
                                 username=conn.username, subscribe=True):
                codes.append(self.config.deny_subscribe_code_v5 if conn.version >= 5 else 0x80)
                continue
            opt = SubOptions(sub.qos, sub.no_local, sub.retain_as_published,
                             sub.retain_handling, sub_id)
            existed = sub.topic_filter in sess.subs
            sess.subs[sub.topic_filter] = opt                 # replaces [MQTT-3.8.4-3]
            self._index_for(sub.topic_filter)[sess.client_id] = opt
            codes.append(sub.qos)
            if parse_shared(sub.topic_filter) is None and (
                    opt.retain_handling == 0 or (opt.retain_handling == 1 and not existed)):
                retained.append((sub.topic_filter, opt))
        self._send(conn, SubAck(s.packet_id, tuple(codes)))   # [MQTT-3.8.4-1]
        for topic_filter, opt in retained:
            self._send_retained(conn, sess, topic_filter, opt, now)

    def _send_retained(self, conn: ClientConn, sess: BrokerSession, topic_filter: str,
                       opt: SubOptions, now: int) -> None:
        for topic, (msg, expires_ns) in list(self.retained.items()):
            if expires_ns is not None and now >= expires_ns:
                del self.retained[topic]
                continue
            if not topic_matches(topic_filter, topic):
                continue
            props = msg.properties
            if opt.sub_id is not None:
                props = Properties((*props.items, (_SUB_ID, opt.sub_id)))
            out = msg._replace(qos=min(msg.qos, opt.qos), retain=True,  # [MQTT-3.3.1-9]
                               properties=props)
            self._send(conn, sess.state.publish(out, now, expires_ns=expires_ns))

    def _unsubscribe(self, conn: ClientConn, u: Unsubscribe) -> None:
        sess = conn.session
        assert sess is not None
        codes: list[int] = []
        for topic_filter in u.topic_filters:
            if sess.subs.pop(topic_filter, None) is not None:
                self._unindex(sess.client_id, topic_filter)
                codes.append(0x00)
            else:
                codes.append(0x11)
        self._send(conn, UnsubAck(u.packet_id, tuple(codes) if conn.version >= 5 else ()))

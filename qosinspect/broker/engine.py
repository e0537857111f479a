"""The broker's brain, pure: sessions, subscriptions, routing and retained messages.

No sockets, no clock: the asyncio server (:mod:`.server`) feeds decoded packets with ``now``
(ns) and collects, per connection, the packets to send and whether to close. The same engine
can be driven from a test or a replay. QoS flows per message are handled by
:class:`qosinspect.mqtt.session.Session` (one per client id), so every QoS rule lives in ``mqtt/``.

What the engine decides, with the statements that fix it:

- CONNACK is the first packet sent [MQTT-3.2.0-1]; a second CONNECT is a protocol error
  [MQTT-3.1.0-2]; an empty client id gets an assigned one (MQTT 5, or 3.1.1 clean session)
  [MQTT-3.1.3-6] [MQTT-3.2.2-16] or is rejected (0x02 / 0x85) [MQTT-3.1.3-8]; the same client
  id connecting again takes the session over, the old connection gets DISCONNECT 0x8E
  [MQTT-3.1.4-3].
- Clean start discards the session [MQTT-3.1.2-4], else it resumes with session present
  [MQTT-3.2.2-2] and unacked flows are resent [MQTT-4.4.0-1]. Session expiry: 3.1.1 clean
  session 0 never expires, 1 ends with the connection; MQTT 5 uses Session Expiry Interval, which
  DISCONNECT may change but not from 0 [MQTT-3.14.2-2].
- Routing: a message goes to each client with a matching subscription once, at the lower of the
  publish and (highest) subscription QoS [MQTT-3.8.4-8]; no-local [MQTT-3.8.3-3]; retain as
  published [MQTT-3.3.1-12] [MQTT-3.3.1-13]; subscription identifiers [MQTT-3.3.4-3]; a shared
  subscription delivers to one member of the group (round robin, online members first).
  Per-topic order holds because routing is synchronous and each session queue is FIFO
  [MQTT-4.6.0-5].
- SUBSCRIBE, UNSUBSCRIBE and retained messages: :mod:`.subscriptions`; the state and the
  plumbing all parts share (output queues, persistence hooks): :mod:`.core`.
- Wills: published when the connection ends without DISCONNECT [MQTT-3.1.2-8] (or with MQTT 5
  reason 0x04), never after a normal DISCONNECT [MQTT-3.1.2-10]; MQTT 5 Will Delay defers it and
  a reconnection in time cancels it [MQTT-3.1.3-9]. A will the ACL does not let the client
  publish is dropped.
- Keep alive: no packet within 1.5 times the keep alive closes the connection [MQTT-3.1.2-22];
  ``max_keepalive`` caps it, announced as Server Keep Alive in MQTT 5 [MQTT-3.2.2-21]; a 3.1.x
  client asking for more (or 0) is refused with 0x02, as mosquitto does.
- Flow control: at most the client's Receive Maximum (else ``max_inflight``) QoS 1/2 messages
  unacknowledged towards it [MQTT-4.9.0-2]; a message larger than the client's Maximum Packet
  Size is not sent to it [MQTT-3.1.2-25].
- Backpressure: a publisher whose QoS 1/2 message went into an online subscriber's full queue
  is *blocked* (``conn.blocked_on``); the server stops reading from it until the queue has
  drained to half (:meth:`take_unblocked`). QoS 0 to a congested connection is dropped and
  counted. Offline sessions never block publishers: their queue is capped by
  ``max_offline_messages`` (oldest dropped, counted). So that a subscriber that stops reading
  cannot stall its publishers for ever, one that acknowledges nothing for
  ``slow_subscriber_timeout`` seconds while publishers wait for it is disconnected (0x97); a
  persistent session then keeps queueing for it offline.
"""

from __future__ import annotations

import secrets

from ..errors import LocalProtocolError, MQTTError
from ..mqtt.codec import encode
from ..mqtt.packets import (
    Auth,
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
    Subscribe,
    Unsubscribe,
    Will,
)
from ..mqtt.properties import NO_PROPERTIES, Properties, PropertyId
from ..mqtt.qos import SendState
from ..mqtt.session import QueuedMessage, Session
from .aliases import TopicAliases
from .auth import READ, WRITE
from .backpressure import Backpressure
from .state import NEVER, NS, BrokerConfig, BrokerSession, BrokerStats, ClientConn, SubOptions
from .subscriptions import SUB_ID
from .sysinfo import SYS_PREFIX

__all__ = ["NEVER", "NS", "BrokerConfig", "BrokerEngine", "BrokerSession", "BrokerStats",
           "ClientConn", "SubOptions"]

_ALIAS = int(PropertyId.TOPIC_ALIAS)
_QOS_ACKS = frozenset((PubAck, PubRec, PubRel, PubComp))


class BrokerEngine(Backpressure):
    """Sessions, subscriptions, retained messages and routing (see the module docstring)."""

    def receive(self, conn: ClientConn, packet: Packet, now: int) -> None:
        """One packet from the client on ``conn``."""
        if conn.closed:
            return
        conn.last_rx_ns = now
        try:
            if type(packet) is Publish and conn.connected:
                self._publish(conn, packet, now)
            elif type(packet) in _QOS_ACKS and conn.connected:
                sess = conn.session
                assert sess is not None
                out = sess.state.receive(packet, now)
                self._send(conn, out.send)
                if sess.state.journal is not None:
                    self.dirty_sessions[sess.client_id] = sess
                if out.completed:
                    self.qos_view.completed(out.completed)
                    self._progress(sess, conn, now)
            elif isinstance(packet, Connect):
                if conn.connected:
                    self.close(conn, 0x82, now)       # a second CONNECT [MQTT-3.1.0-2]
                else:
                    self._connect(conn, packet, now)
            elif not conn.connected:
                self.close(conn, 0x82, now)           # CONNECT must come first [MQTT-3.1.0-1]
            elif isinstance(packet, Subscribe):
                self._subscribe(conn, packet, now)
            elif isinstance(packet, Unsubscribe):
                self._unsubscribe(conn, packet)
            elif isinstance(packet, PingReq):
                self._send(conn, PingResp())          # [MQTT-3.12.4-1]
            elif isinstance(packet, Disconnect):
                self._disconnect(conn, packet, now)
            elif isinstance(packet, Auth):
                self.close(conn, 0x82, now)           # no enhanced authentication offered
            else:
                self.close(conn, 0x82, now)           # a packet only a server sends
        except LocalProtocolError:
            raise                                 # our own bug, not the client's: no close
        except MQTTError as exc:                  # the client's, RemoteProtocolError included
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
        self._forget_blocks(conn)
        conn.retained_cursors.clear()
        self._cursors.pop(conn.conn_id, None)
        self.conns.pop(conn.conn_id, None)
        self._dirty.pop(conn.conn_id, None)

    def shutdown(self, now: int) -> None:
        """The server stops: MQTT 5 clients get DISCONNECT 0x8B; sessions stay (no wills)."""
        for conn in list(self.conns.values()):
            self.close(conn, 0x8B, now, publish_will=False)

    def tick(self, now: int) -> None:
        """CONNECT timeout, keep alive (1.5x) [MQTT-3.1.2-22], due wills, expired sessions."""
        connect_deadline = int(self.config.connect_timeout * NS)
        for conn in list(self.conns.values()):
            if conn.closed:
                continue
            if not conn.connected:
                if now - conn.opened_ns > connect_deadline:
                    self.close(conn, None, now)
            elif conn.blocked_on or conn.congested:
                conn.last_rx_ns = now     # not read from on purpose: its pings wait unread
            elif conn.keep_alive and now - conn.last_rx_ns > conn.keep_alive * NS * 3 // 2:
                self.close(conn, 0x8D, now)
        for cid, (will, due, version) in list(self._wills.items()):
            if now >= due:
                del self._wills[cid]
                self._publish_will(will, version, now)
        self._check_slow(now)                             # publishers must not wait forever
        for sess in list(self._offline.values()):
            if self._expired(sess, now):
                self._end_session(sess, now)

    @staticmethod
    def _expired(sess: BrokerSession, now: int) -> bool:
        """An offline session whose Session Expiry Interval has passed [MQTT-3.1.2-23]."""
        return sess.conn is None and sess.disconnected_ns is not None and \
            now >= sess.disconnected_ns + sess.expiry_s * NS

    # -- connect / disconnect ---------------------------------------------------------------------

    def _connect(self, conn: ClientConn, c: Connect, now: int) -> None:
        if c.protocol_version > self.config.max_protocol_version:
            # What a broker of that older version does: its own CONNACK format, code 1.
            conn.version = self.config.max_protocol_version
            self.refuse(conn, 0x01)                   # [MQTT-3.1.2-2]
            return
        v5 = c.protocol_version >= 5
        conn.version = c.protocol_version
        username = c.username
        if conn.cert_username is not None:
            username, code = conn.cert_username, 0    # the TLS client certificate vouches
        else:
            code = self.auth.authenticate(c.username, c.password)
        if not code and v5 and c.properties.authentication_method is not None:
            self.refuse(conn, 0x8C)                  # no enhanced authentication offered
            return
        if not code and v5 and c.will is not None:
            code = _payload_format_error(c.will.payload, c.will.properties)
            if code:
                self.refuse(conn, code)
                return
        if code:
            self.refuse(conn, (0x86 if code == 4 else 0x87) if v5 else code)
            return
        client_id = c.client_id
        assigned = None
        if not client_id:
            if c.protocol_version == 3 or (not v5 and not c.clean_start):
                self.refuse(conn, 0x02)              # [MQTT-3.1.3-8]
                return
            client_id = assigned = self._assign_client_id()    # [MQTT-3.1.3-6]
        elif c.protocol_version == 3 and len(client_id) > 23:
            self.refuse(conn, 0x02)                  # MQTT 3.1: 1 to 23 characters
            return
        keep_alive = c.keep_alive
        max_ka = self.config.max_keepalive
        if max_ka and (keep_alive == 0 or keep_alive > max_ka):
            if not v5:
                self.refuse(conn, 0x02)              # 3.1.x cannot be told: mosquitto refuses
                return
            keep_alive = max_ka                       # Server Keep Alive [MQTT-3.2.2-21]
        stale = self._offline.get(client_id)
        if stale is not None and self._expired(stale, now):
            self._end_session(stale, now)    # expired before a tick noticed [MQTT-3.1.2-23]
        if client_id not in self.sessions and len(self.sessions) >= self.config.max_sessions:
            self.refuse(conn, 0x97 if v5 else 0x03)
            return
        old = self.sessions.get(client_id)
        if old is not None and old.conn is not None:
            self.close(old.conn, 0x8E, now)           # session takeover [MQTT-3.1.4-3]
            old = self.sessions.get(client_id)
        self._wills.pop(client_id, None)              # reconnected in time [MQTT-3.1.3-9]
        # 3.1.1: clean session 0 never expires, 1 ends with the connection
        expiry = (c.properties.session_expiry_interval or 0) if v5 else \
            (0 if c.clean_start else NEVER)
        if old is not None and (c.clean_start or old.username != username):
            # [MQTT-3.1.2-4]; and a client id never hands one user's session (its queue, its
            # messages in flight, its subscriptions) to another user: a clean one starts.
            self._end_session(old, now)
            old = None
        present = old is not None and conn.version >= 4   # MQTT 3.1 has no such flag
        receive_max = (c.properties.receive_maximum if v5 else None) or self.config.max_inflight
        if old is None:
            sess = BrokerSession(client_id, Session(
                version=conn.version, receive_maximum=receive_max,
                max_queued=self.config.max_queued_messages,
                hard_limit=self.config.max_offline_messages))
            self.sessions[client_id] = sess
        else:
            sess = old
        # An MQTT 5 client bounds its unacknowledged QoS 2 flows by our Receive Maximum; a 3.1.x
        # client by the 65535 packet ids, so its table is bounded too.
        sess.state.receiver.receive_maximum = self.config.receive_maximum if v5 else 0xFFFF
        sess.conn = conn
        sess.expiry_s = expiry
        sess.disconnected_ns = None
        sess.version = conn.version
        sess.max_packet_size = c.properties.maximum_packet_size if v5 else None
        sess.username = username
        self._offline.pop(client_id, None)
        conn.session = sess
        conn.client_id = client_id
        conn.username = username
        conn.connected = True
        conn.keep_alive = keep_alive
        client_aliases = (c.properties.topic_alias_maximum or 0) if v5 else 0
        out_aliases = min(client_aliases, self.config.outgoing_topic_aliases)
        conn.aliases = TopicAliases(out_aliases) if out_aliases > 0 else None
        will = c.will
        if will is not None and not self.auth.may(WRITE, will.topic, client_id=client_id,
                                                  username=username):
            will = None                               # not allowed: never published
        conn.will = will
        self._persist_session(sess)
        self.stats.connects += 1
        props = NO_PROPERTIES
        if v5:
            kw: dict[str, object] = {
                "receive_maximum": self.config.receive_maximum,
                "topic_alias_maximum": self.config.topic_alias_maximum,
                "maximum_packet_size": self.config.max_packet_size,
            }
            if assigned:
                kw["assigned_client_identifier"] = assigned
            if keep_alive != c.keep_alive:
                kw["server_keep_alive"] = keep_alive
            props = Properties.of(**kw)
        self._send(conn, ConnAck(present, 0, props))  # [MQTT-3.2.0-1] [MQTT-3.2.2-2]
        if old is not None and self.auth.acl is not None:
            self._drop_unreadable(sess)
        resent = sess.state.connection_made(
            now, session_present=old is not None, version=conn.version,
            receive_maximum=receive_max)
        for packet in resent:
            if type(packet) is Publish and packet.dup:
                self.stats.redelivered[packet.qos] += 1
        self._send(conn, resent)
        self._touch(sess)

    def _assign_client_id(self) -> str:
        """A random client id (unguessable, unlike a counter), never one a session has."""
        while True:
            client_id = f"qosinspect-{secrets.token_hex(8)}"
            if client_id not in self.sessions:
                return client_id

    def _drop_unreadable(self, sess: BrokerSession) -> None:
        """Before a resumed session resends: drop what its user may not read (now)."""
        state = sess.state
        sender = state.sender
        journal = state.journal

        def readable(p: Publish) -> bool:
            return self.auth.may(READ, p.topic, client_id=sess.client_id,
                                 username=sess.username)

        for pid, flight in list(sender.in_flight.items()):
            if flight.state is not SendState.WAIT_PUBCOMP and not readable(flight.publish):
                del sender.in_flight[pid]
                sender.ids.release(pid)
                self.stats.denied_delivery += 1
                if journal is not None:
                    journal.append(("done", flight.tag))
        kept: list[QueuedMessage] = []
        gone: list[QueuedMessage] = []
        for item in state.queue:
            (kept if readable(item.publish) else gone).append(item)
        if gone:
            self.stats.denied_delivery += len(gone)
            if journal is not None:
                journal.extend(("dropped", item.tag) for item in gone)
            state.queue.clear()
            state.queued_bytes = 0
            for item in kept:
                state.enqueue(item)

    def refuse(self, conn: ClientConn, code: int) -> None:
        """Answer CONNECT with a refusal ``code`` and close."""
        self.stats.connections_refused += 1
        self._send(conn, ConnAck(False, code))   # [MQTT-3.2.2-6]: no session present
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
            self._persist_session(sess)
        conn.client_disconnected = True
        with_will = conn.version >= 5 and d.reason_code == 0x04
        if not with_will:
            conn.will = None                      # [MQTT-3.1.2-10]
        conn.close_reason = 0
        self._dirty[conn.conn_id] = conn
        self._detach(conn, now, with_will)
        conn.closed = True

    def _detach(self, conn: ClientConn, now: int, publish_will: bool) -> None:
        self._forget_blocks(conn)
        sess = conn.session
        if not conn.connected or sess is None:
            return
        will = conn.will if publish_will else None
        conn.will = None
        if sess.conn is conn:
            sess.conn = None
            sess.state.connection_lost()
            sess.disconnected_ns = now
            if sess.expiry_s and sess.expiry_s != NEVER:
                self._offline[sess.client_id] = sess
            self._release(sess)
        if will is not None:
            delay = (will.properties.will_delay_interval or 0) if conn.version >= 5 else 0
            if delay and sess.expiry_s:
                self._wills[sess.client_id] = (will, now + delay * NS, conn.version)
            else:
                self._publish_will(will, conn.version, now)
        if sess.conn is None and sess.expiry_s == 0:
            self._end_session(sess, now)

    def _end_session(self, sess: BrokerSession, now: int) -> None:
        stored = sess.state.journal is not None
        pending = self._wills.pop(sess.client_id, None)
        if pending is not None:
            self._publish_will(pending[0], pending[2], now)   # session end sends it at once
        for topic_filter in list(sess.subs):
            self.index.remove(sess.client_id, topic_filter)
        sess.subs.clear()
        sess.state.journal = None
        sess.state.clear()
        self._release(sess)
        self._offline.pop(sess.client_id, None)
        if self.sessions.get(sess.client_id) is sess:
            del self.sessions[sess.client_id]
            self.dirty_sessions.pop(sess.client_id, None)
            if self.changes is not None and stored:
                self.changes.append(("end_session", sess.client_id))

    def _publish_will(self, will: Will, version: int, now: int) -> None:
        props = will.properties.without(int(PropertyId.WILL_DELAY_INTERVAL))
        self._accept(Publish(will.topic, will.payload, will.qos, False, will.retain, None,
                             props), now, None)

    # -- publish ------------------------------------------------------------------------------

    def _publish(self, conn: ClientConn, p: Publish, now: int) -> None:
        sess = conn.session
        assert sess is not None
        props = p.properties
        if props.items and conn.version >= 5:    # (.items: bool(props) is a Python call)
            alias = props.topic_alias
            if alias is not None and alias > self.config.topic_alias_maximum:
                self.close(conn, 0x94, now)           # [MQTT-3.3.2-9]
                return
            if props.subscription_identifiers:
                self.close(conn, 0x82, now)           # [MQTT-3.3.4-6]
                return
            bad_format = _payload_format_error(p.payload, props)
            if bad_format == 0x99 and p.qos:          # refused: the flow ends there
                self._send(conn, PubAck(p.packet_id or 0, 0x99) if p.qos == 1 else
                           PubRec(p.packet_id or 0, 0x99))
                return
            if bad_format:
                self.close(conn, bad_format, now)
                return
        if p.topic.startswith(SYS_PREFIX) or (self.auth.acl is not None and not self.auth.may(
                WRITE, p.topic, client_id=conn.client_id, username=conn.username)):
            self.stats.denied_publish += 1
            if p.qos and conn.version >= 5:           # refused: the flow ends there
                self._send(conn, PubAck(p.packet_id or 0, 0x87) if p.qos == 1 else
                           PubRec(p.packet_id or 0, 0x87))
            elif p.qos:                               # 3.1.x cannot refuse: ack, drop
                self._send(conn, PubAck(p.packet_id or 0) if p.qos == 1 else
                           PubRec(p.packet_id or 0))
            return
        out = sess.state.receive(p, now)
        if sess.state.journal is not None and p.qos == 2:
            self.dirty_sessions[sess.client_id] = sess
        self._send(conn, out.send)                    # the ack first: the publisher waits
        if out.deliver:
            self._accept(p, now, conn)

    def publish_sys(self, values: dict[str, str], now: int) -> None:
        """Publish the ``$SYS/broker/...`` topics (see :mod:`.sysinfo`), retained, QoS 0.
        They are retained in memory only (never stored: they describe this run) and do not
        count against ``max_retained``."""
        for topic, payload in values.items():
            msg = Publish(f"{SYS_PREFIX}broker/{topic}", payload.encode(), 0, False, True)
            self.retained.set(msg.topic, msg.payload, 0, msg.properties, None,
                              self.retained_seq())
            self.sys_topics.add(msg.topic)
            self._route(msg, now, None, None)

    def _accept(self, p: Publish, now: int, origin: ClientConn | None) -> None:
        """A message accepted from a publisher (or a will): retain, then route."""
        self.stats.messages_received += 1
        props = p.properties
        expires_ns = None
        if props.items:
            expiry = props.message_expiry_interval
            if expiry is not None:
                expires_ns = now + expiry * NS
            if props.topic_alias is not None:
                props = props.without(_ALIAS)
        msg = Publish(p.topic, p.payload, p.qos, False, p.retain, None, props)
        if p.retain:
            self._retain(msg, expires_ns)
        self._route(msg, now, expires_ns, origin)

    def _route(self, msg: Publish, now: int, expires_ns: int | None,
               origin: ClientConn | None) -> None:
        origin_id = origin.client_id if origin is not None else None
        targets: dict[str, tuple[int, list[int], bool]] = {}
        for node in self.index.match(msg.topic):
            for client_id, opt in node.subs.items():
                if opt.no_local and client_id == origin_id:
                    continue                                   # [MQTT-3.8.3-3]
                self._merge(targets, client_id, opt)
            for members in node.shared.values():
                if members:
                    chosen = self._pick_member(members)
                    self._merge(targets, chosen, members[chosen])
        acl = self.auth.acl
        sessions = self.sessions
        for client_id, (qos, sub_ids, rap) in targets.items():
            sess = sessions.get(client_id)
            if sess is None:
                continue
            conn = sess.conn
            if acl is not None and not self.auth.may(
                    READ, msg.topic, client_id=client_id, username=sess.username):
                self.stats.denied_delivery += 1
                continue
            out_qos = qos if qos < msg.qos else msg.qos         # [MQTT-3.8.4-8]
            props = msg.properties
            if sub_ids:
                props = Properties((*props.items, *((SUB_ID, s) for s in sub_ids)))
            # (the constructor, not _replace: a third of the cost, on every copy routed)
            out = Publish(msg.topic, msg.payload, out_qos, msg.dup, msg.retain and rap,
                          msg.packet_id, props)
            if out_qos == 0 and (conn is None or conn.congested):
                self.stats.dropped_qos0 += 1
                if conn is not None:
                    conn.dropped_qos0 += 1
                continue
            if sess.max_packet_size is not None and \
                    len(encode(out._replace(packet_id=1 if out_qos else None), 5)) > \
                    sess.max_packet_size:
                self.stats.dropped_too_large += 1               # [MQTT-3.1.2-25]
                continue
            self.stats.messages_routed += 1
            state = sess.state
            packets = state.publish(out, now, expires_ns=expires_ns,
                                    tag=next(self._seq) if state.journal is not None else None)
            if state.journal is not None:
                self.dirty_sessions[client_id] = sess
            if conn is not None:
                self._send_publishes(conn, packets)
                if out_qos and state.queue and self._queue_full(sess):  # (limits are >= 1)
                    self._overflow(sess, conn, origin, now)

    @staticmethod
    def _merge(targets: dict[str, tuple[int, list[int], bool]], client_id: str,
               opt: SubOptions) -> None:
        got = targets.get(client_id)
        if got is None:
            targets[client_id] = (opt.qos, [] if opt.sub_id is None else [opt.sub_id],
                                  opt.retain_as_published)
            return
        qos, sub_ids, rap = got
        if opt.sub_id is not None:
            sub_ids = [*sub_ids, opt.sub_id]
        targets[client_id] = (max(qos, opt.qos), sub_ids, rap or opt.retain_as_published)

    def _pick_member(self, members: dict[str, SubOptions]) -> str:
        names = list(members)
        online = [n for n in names if (s := self.sessions.get(n)) is not None and s.conn]
        pool = online or names
        return pool[next(self._rr) % len(pool)]


def _payload_format_error(payload: bytes, props: Properties) -> int:
    """0 when the Payload Format Indicator is fine; 0x82 when it is neither 0 nor 1 (MQTT 5.0
    3.3.2.3.2 and 3.1.3.2.3 define only those); 0x99 when it is 1 (UTF-8) and the payload is
    not UTF-8 [MQTT-3.3.2-4] [MQTT-3.1.3-11] (the broker checks, as a receiver MAY)."""
    pfi = props.payload_format_indicator if props else None
    if pfi is None or pfi == 0:
        return 0
    if pfi != 1:
        return 0x82
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return 0x99
    return 0

"""SUBSCRIBE, UNSUBSCRIBE and retained messages: the broker engine's subscription side.

- SUBACK carries a return code per filter [MQTT-3.8.4-1]; a filter the ACL does not allow gets
  0x80 (3.1.1) or the configured 0x80/0x87 (5.0); a subscription replaces an existing one with
  the same filter [MQTT-3.8.4-3]; past ``max_subscriptions`` new filters get 0x80 / 0x97.
- Retained: a retained PUBLISH replaces the topic's retained message [MQTT-3.3.1-5], an empty
  payload clears it [MQTT-3.3.1-6] [MQTT-3.3.1-7]; on subscribe it is sent with RETAIN=1
  [MQTT-3.3.1-9] per retain handling 0/1/2 [MQTT-3.3.1-10] [MQTT-3.3.1-11], at the lower of
  its QoS and the subscription's, with the subscription identifier; never to shared
  subscriptions; an expired one is dropped when met.
- UNSUBACK: 0x00 per removed filter, 0x11 (no subscription existed) in MQTT 5; 3.1.x has none.
"""

from __future__ import annotations

from ..mqtt.packets import Publish, SubAck, Subscribe, UnsubAck, Unsubscribe
from ..mqtt.properties import Properties, PropertyId
from ..mqtt.topics import parse_shared, topic_matches
from .auth import READ
from .core import EngineState
from .retained import RetainedCursor
from .state import BrokerSession, ClientConn, SubOptions

__all__ = ["SUB_ID", "SubscriptionHandling"]

#: The Subscription Identifier property, as it goes into a PUBLISH's properties.
SUB_ID = int(PropertyId.SUBSCRIPTION_IDENTIFIER)


class SubscriptionHandling(EngineState):
    """The subscription side of :class:`.engine.BrokerEngine` (see the module docstring)."""

    # -- subscribe ------------------------------------------------------------------------------

    def _retain(self, msg: Publish, expires_ns: int | None) -> None:
        topic = msg.topic
        if msg.payload:
            if topic not in self.retained and \
                    len(self.retained) - len(self.sys_topics) >= self.config.max_retained:
                self.stats.retained_refused += 1
                return
            self.retained.set(topic, msg.payload, msg.qos,  # [MQTT-3.3.1-5]
                              msg.properties, expires_ns, self.retained_seq())
            if self.changes is not None:
                self.changes.append(("retain", msg, expires_ns))
        elif topic in self.retained:
            self._unretain(topic)                             # [MQTT-3.3.1-6]

    def _unretain(self, topic: str) -> None:
        """Drop the topic's retained message (and record it for the store)."""
        del self.retained[topic]
        if self.changes is not None:
            self.changes.append(("unretain", topic))

    def _subscribe(self, conn: ClientConn, s: Subscribe, now: int) -> None:
        sess = conn.session
        assert sess is not None
        v5 = conn.version >= 5
        sub_ids = s.properties.subscription_identifiers if v5 else []
        sub_id = sub_ids[0] if sub_ids else None
        codes: list[int] = []
        retained: list[tuple[str, SubOptions]] = []
        for sub in s.subscriptions:
            if not self.auth.may(READ, sub.topic_filter, client_id=conn.client_id,
                                 username=conn.username, subscribe=True):
                codes.append(self.config.deny_subscribe_code_v5 if v5 else 0x80)
                continue
            existed = sub.topic_filter in sess.subs
            if not existed and len(sess.subs) >= self.config.max_subscriptions:
                codes.append(0x97 if v5 else 0x80)
                continue
            opt = SubOptions(sub.qos, sub.no_local, sub.retain_as_published,
                             sub.retain_handling, sub_id)
            sess.subs[sub.topic_filter] = opt                 # replaces [MQTT-3.8.4-3]
            self.index.add(sess.client_id, sub.topic_filter, opt)
            if self.changes is not None and sess.persistent:
                self.changes.append(("sub", sess.client_id, sub.topic_filter, opt))
            codes.append(sub.qos)
            if parse_shared(sub.topic_filter) is None and (
                    opt.retain_handling == 0 or (opt.retain_handling == 1 and not existed)):
                retained.append((sub.topic_filter, opt))
        self._send(conn, SubAck(s.packet_id, tuple(codes)))   # [MQTT-3.8.4-1]
        for topic_filter, opt in retained:
            self._send_retained(conn, sess, topic_filter, opt, now)

    def _send_retained(self, conn: ClientConn, sess: BrokerSession, topic_filter: str,
                       opt: SubOptions, now: int) -> None:
        if "+" in topic_filter or "#" in topic_filter:
            if not self.retained:
                return
            cursor = RetainedCursor(topic_filter, opt, iter(self.retained.topics()),
                                    self.retained_seq())
            conn.retained_cursors.append(cursor)
            self._cursors[conn.conn_id] = conn
            self._pump(conn, now)
        elif topic_filter in self.retained:
            self._send_one_retained(conn, sess, topic_filter, opt, None, now)

    def _send_one_retained(self, conn: ClientConn, sess: BrokerSession, topic: str,
                           opt: SubOptions, since_seq: int | None, now: int) -> bool:
        """Send ``topic``'s retained message to ``conn`` if it may have it; whether it went."""
        msg = self.retained.get(topic)
        if msg is None or (since_seq is not None and msg.seq > since_seq):
            return False                          # gone, or newer: it was routed live
        if msg.expires_ns is not None and now >= msg.expires_ns:
            self._unretain(topic)
            return False
        if self.auth.acl is not None and not self.auth.may(
                READ, topic, client_id=conn.client_id, username=sess.username):
            return False
        props = msg.properties
        if opt.sub_id is not None:
            props = Properties((*props.items, (SUB_ID, opt.sub_id)))
        out = Publish(topic, msg.payload, min(msg.qos, opt.qos), False, True,  # [MQTT-3.3.1-9]
                      None, props)
        state = sess.state
        self._send(conn, state.publish(
            out, now, expires_ns=msg.expires_ns,
            tag=next(self._seq) if state.journal is not None else None))
        self._touch(sess)
        return True

    def pump_retained(self, now: int) -> bool:
        """Send the next slice of every connection's pending retained messages (see
        :mod:`.retained`); True while some connection could take more right now."""
        more = False
        for conn in list(self._cursors.values()):
            more = self._pump(conn, now) or more
        return more

    def _pump(self, conn: ClientConn, now: int) -> bool:
        sess = conn.session
        cursors = conn.retained_cursors
        if conn.closed or sess is None or sess.conn is not conn:
            cursors.clear()
        budget = self.config.retained_batch
        scan = budget * 16                        # topics looked at per slice, matching or not
        limit = self.config.max_queued_messages
        while cursors and sess is not None and budget > 0 and scan > 0 and \
                not conn.congested and len(sess.state.queue) < limit:
            cursor = cursors[0]
            for topic in cursor.topics:
                scan -= 1
                if topic_matches(cursor.topic_filter, topic) and self._send_one_retained(
                        conn, sess, topic, cursor.options, cursor.since_seq, now):
                    budget -= 1
                if budget <= 0 or scan <= 0:
                    break
            else:
                cursors.popleft()
        if not cursors:
            self._cursors.pop(conn.conn_id, None)
            return False
        return not conn.congested and sess is not None and len(sess.state.queue) < limit

    def _unsubscribe(self, conn: ClientConn, u: Unsubscribe) -> None:
        sess = conn.session
        assert sess is not None
        codes: list[int] = []
        for topic_filter in u.topic_filters:
            if sess.subs.pop(topic_filter, None) is not None:
                self.index.remove(sess.client_id, topic_filter)
                if self.changes is not None and sess.persistent:
                    self.changes.append(("unsub", sess.client_id, topic_filter))
                codes.append(0x00)
            else:
                codes.append(0x11)
        self._send(conn, UnsubAck(u.packet_id, tuple(codes) if conn.version >= 5 else ()))

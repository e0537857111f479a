"""One endpoint's MQTT session, sans-I/O: the state that outlives a network connection.

A :class:`Session` is what a client holds for itself and what a broker holds per client id: the
outbound flows (a :class:`~.qos.Sender`), the inbound QoS 2 ids (a :class:`~.qos.Receiver`), and
a bounded FIFO of messages not yet sent because the peer is offline or the send quota is used up.
It knows nothing about CONNECT, sockets or clocks: a driver tells it when a connection starts and
ends and passes ``now`` (ns) with every call; it answers with packets to send, messages to deliver
and flows that completed.

Rules it applies (the per-message tables are in :mod:`.qos`):

- On a new connection that keeps the session, unacknowledged PUBLISH (DUP=1) and PUBREL are
  resent with their original ids and order, before anything queued [MQTT-4.4.0-1]
  [MQTT-4.6.0-1]; a clean start discards them [MQTT-3.1.2-4].
- While disconnected, QoS 1/2 messages wait in the queue (QoS 0 ones are dropped and counted);
  they go out in order once connected, as the send quota allows [MQTT-4.9.0-2].
- A queued message whose Message Expiry Interval has passed is dropped, and one that is sent
  carries the remaining interval (MQTT 5 3.3.2.3.3). Once sent it never expires
  [MQTT-4.3.3-7].
- Packet ids continue across connections of the same session.

Journal (for a driver that persists sessions, e.g. the broker's SQLite store): when
:attr:`Session.journal` is a list, every change to the stored state is appended to it as a
tuple, and the driver writes them out before it sends the packets the call returned (so an
acknowledgement never leaves before what it acknowledges is stored). Messages are named by the
``tag`` the driver gave them::

    ("queued", item)          a QoS 1/2 message entered the queue (a QueuedMessage)
    ("dropped", tag)          a queued message left unsent (expired, or over the hard limit)
    ("sent", tag, publish)    it was sent with ``publish.packet_id`` (state WAIT_PUBACK/PUBREC)
    ("pubrec", packet_id)     the outbound QoS 2 flow reached WAIT_PUBCOMP
    ("done", tag)             the outbound flow ended (acknowledged or refused)
    ("in2", packet_id)        an inbound QoS 2 id was stored (PUBREC sent)
    ("rel2", packet_id)       it was released (PUBREL received)
    ("clear",)                everything was discarded
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .packets import Packet, PubAck, PubComp, Publish, PubRec, PubRel
from .properties import Properties, PropertyId
from .qos import Completed, Receiver, Sender

__all__ = ["QueuedMessage", "Session", "SessionOutput"]

_EXPIRY = int(PropertyId.MESSAGE_EXPIRY_INTERVAL)


@dataclass(slots=True)
class QueuedMessage:
    """A message waiting to be sent; ``expires_ns`` is None when it never expires."""

    publish: Publish
    expires_ns: int | None = None
    tag: object = None
    #: What it adds to :attr:`Session.queued_bytes` (set when it is queued).
    size: int = 0


@dataclass(slots=True)
class SessionOutput:
    """What a driver must do after a call: send, deliver to the application, report."""

    send: list[Packet] = field(default_factory=list)
    deliver: list[Publish] = field(default_factory=list)
    completed: list[Completed] = field(default_factory=list)


def _size(p: Publish) -> int:
    """A queued message's bytes for the byte bound: topic and payload."""
    return len(p.topic) + len(p.payload)


class Session:
    """The session of one endpoint towards its peer (see the module docstring).

    ``max_queued`` bounds the queue of messages not yet sent; :meth:`publish` still accepts
    QoS 1/2 messages past it (a driver applies backpressure using :attr:`over_limit`) but
    ``hard_limit`` (default 10 times ``max_queued``) drops the oldest, counted in ``dropped``.
    """

    def __init__(self, *, version: int = 4, receive_maximum: int = 65535,
                 our_receive_maximum: int = 65535, max_queued: int = 1000,
                 hard_limit: int | None = None) -> None:
        self.version = version
        self.sender = Sender(version=version, receive_maximum=receive_maximum)
        self.receiver = Receiver(version=version, receive_maximum=our_receive_maximum)
        self.queue: deque[QueuedMessage] = deque()
        self.max_queued = max_queued
        self.hard_limit = hard_limit if hard_limit is not None else 10 * max_queued
        self.connected = False
        self.dropped_qos0 = 0
        self.dropped = 0
        self.expired = 0
        #: Bytes (topic and payload) of the messages in the queue, for a byte bound.
        self.queued_bytes = 0
        #: A list to record state changes into (see the module docstring), or None.
        self.journal: list[tuple[Any, ...]] | None = None

    # -- connection lifecycle --------------------------------------------------------------------

    def connection_made(self, now: int, *, session_present: bool, version: int | None = None,
                        receive_maximum: int | None = None) -> list[Packet]:
        """A connection is up. Returns the resends [MQTT-4.4.0-1], then queued messages."""
        if version is not None:
            self.version = self.sender.version = self.receiver.version = version
        if receive_maximum is not None:
            self.sender.receive_maximum = max(1, min(receive_maximum, 0xFFFF))
        if not session_present:
            self.sender.clear()
            self.receiver.clear()
        self.connected = True
        out = self.sender.resend(now) if session_present else []
        out.extend(self.drain(now))
        return out

    def connection_lost(self) -> None:
        self.connected = False

    def clear(self) -> None:
        """Discard all state (a clean start or an expired session)."""
        self.sender.clear()
        self.receiver.clear()
        self.queue.clear()
        self.queued_bytes = 0
        if self.journal is not None:
            self.journal.append(("clear",))

    # -- outbound --------------------------------------------------------------------------------

    @property
    def over_limit(self) -> bool:
        """True when the queue holds ``max_queued`` or more: the driver should push back."""
        return len(self.queue) >= self.max_queued

    def publish(self, publish: Publish, now: int, *, expires_ns: int | None = None,
                tag: object = None) -> list[Packet]:
        """Send an application message now if possible, else queue it (QoS 1/2 only)."""
        if publish.qos == 0:
            if not self.connected:
                self.dropped_qos0 += 1
                return []
            return [self._with_expiry(publish, expires_ns, now)]
        journal = self.journal
        if not self.queue and self.connected and self.sender.quota > 0 and (
                expires_ns is None or now < expires_ns):
            # What queueing and draining at once would do, without the queue (the common case
            # of a subscriber that keeps up): the same packet, the same journal entries.
            sent = self.sender.send(self._with_expiry(publish, expires_ns, now), now, tag)
            if journal is not None:
                journal.append(("queued", QueuedMessage(publish, expires_ns, tag)))
                journal.append(("sent", tag, sent))
            return [sent]
        if len(self.queue) >= self.hard_limit:
            self.drop_oldest()
        item = QueuedMessage(publish, expires_ns, tag, _size(publish))
        self.queue.append(item)
        self.queued_bytes += item.size
        if journal is not None:
            journal.append(("queued", item))
        return self.drain(now) if self.connected and self.sender.quota > 0 else []

    def enqueue(self, item: QueuedMessage) -> None:
        """Append to the queue (a message read from a store too: no journal entry)."""
        item.size = size = _size(item.publish)
        self.queue.append(item)
        self.queued_bytes += size

    def drop_oldest(self) -> QueuedMessage | None:
        """Drop the oldest queued message (counted in ``dropped``); None when none waits."""
        if not self.queue:
            return None
        lost = self.queue.popleft()
        self.queued_bytes -= lost.size
        self.dropped += 1
        if self.journal is not None:
            self.journal.append(("dropped", lost.tag))
        return lost

    def drain(self, now: int) -> list[Packet]:
        """Send queued messages as far as the send quota allows [MQTT-4.9.0-2]."""
        out: list[Packet] = []
        queue = self.queue
        sender = self.sender
        room = sender.quota
        if not queue or not self.connected or room <= 0:
            return out
        journal = self.journal
        while queue and room > 0:
            item = queue.popleft()
            self.queued_bytes -= item.size
            expires_ns = item.expires_ns
            if expires_ns is not None and now >= expires_ns:
                self.expired += 1
                if journal is not None:
                    journal.append(("dropped", item.tag))
                continue
            sent = sender.send(item.publish if expires_ns is None else
                               self._with_expiry(item.publish, expires_ns, now), now, item.tag)
            room -= 1                              # what sender.quota now says
            out.append(sent)
            if journal is not None:
                journal.append(("sent", item.tag, sent))
        return out

    def _with_expiry(self, publish: Publish, expires_ns: int | None, now: int) -> Publish:
        if expires_ns is None or self.version < 5:
            return publish
        remaining = max(0, (expires_ns - now + 999_999_999) // 1_000_000_000)
        props = publish.properties.without(_EXPIRY)
        return publish._replace(properties=Properties((*props.items, (_EXPIRY, remaining))))

    # -- inbound ---------------------------------------------------------------------------------

    def receive(self, packet: Packet, now: int) -> SessionOutput:
        """Handle PUBLISH, PUBACK, PUBREC, PUBREL or PUBCOMP from the peer."""
        out = SessionOutput()
        journal = self.journal
        if type(packet) is Publish:
            deliver, ack = self.receiver.on_publish(packet, now)
            if deliver:
                out.deliver.append(packet)
                if journal is not None and packet.qos == 2:
                    journal.append(("in2", packet.packet_id))
            if ack is not None:
                out.send.append(ack)
        elif type(packet) is PubAck:
            done = self.sender.on_puback(packet, now)
            if done is not None:
                out.completed.append(done)
                if journal is not None:
                    journal.append(("done", done.tag))
                out.send.extend(self.drain(now))
        elif type(packet) is PubRec:
            rel, done = self.sender.on_pubrec(packet, now)
            if rel is not None:
                out.send.append(rel)
                if journal is not None and not rel.reason_code:
                    journal.append(("pubrec", packet.packet_id))
            if done is not None:
                out.completed.append(done)
                if journal is not None:
                    journal.append(("done", done.tag))
                out.send.extend(self.drain(now))
        elif type(packet) is PubRel:
            out.send.append(self.receiver.on_pubrel(packet, now))
            if journal is not None:
                journal.append(("rel2", packet.packet_id))
        elif type(packet) is PubComp:
            done = self.sender.on_pubcomp(packet, now)
            if done is not None:
                out.completed.append(done)
                if journal is not None:
                    journal.append(("done", done.tag))
                out.send.extend(self.drain(now))
        else:
            raise TypeError(f"not a QoS packet: {type(packet).__name__}")
        return out

"""A builder of scripted boundary-event sequences, for testing the analysis without captures.

Why: every QoS rule of the analysis (a packet id reused, a PUBREL resent after a reconnect, a
QoS 2 flow stuck after PUBREC, a client silent past its keep alive) needs a sequence with a known
answer, and real captures only have the ones that happened to occur. The builder writes the same
:mod:`qosinspect.events` a capture decoder or a live tap produces, with a clock that advances by
``step_ns`` per event unless told otherwise.

Usage::

    b = EventBuilder()
    c = b.client("sensor-1", keep_alive=60, clean_start=False)   # SYN, CONNECT, CONNACK
    b.publish(c, "c2b", "t/1", b"x", qos=1, packet_id=1)
    b.puback(c, "b2c", 1, dt_ms=4)
    b.close(c, "rst", closed_by="c2b")
    result = correlate(b.events)

Directions are ``"c2b"`` (client to broker) or ``"b2c"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..anomalies import AnomalyKind
from ..events import (
    Anomaly,
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    Event,
    MqttPacketEvent,
    StreamGap,
    TcpRetransmission,
)
from ..mqtt.enums import Direction
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
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from ..mqtt.properties import NO_PROPERTIES, Properties

__all__ = ["T0", "Conn", "EventBuilder"]

#: 2024-01-01T00:00:00Z in ns: the default start of a scripted capture.
T0 = 1_704_067_200 * 10**9


@dataclass(frozen=True)
class Conn:
    """A scripted connection: its boundary info and the protocol version of its packets."""

    info: ConnectionInfo
    version: int

    @property
    def conn_id(self) -> int:
        return self.info.conn_id


def _dir(direction: str | Direction) -> Direction:
    return Direction(direction)


class EventBuilder:
    """Appends events to :attr:`events`; every method takes ``dt_ms`` (time since the previous
    event, default ``step_ns``) or ``at_ns`` (absolute time)."""

    def __init__(self, start_ns: int = T0, step_ns: int = 1_000_000,
                 broker: tuple[str, int] = ("10.0.0.1", 1883)) -> None:
        self.now = start_ns
        self.step_ns = step_ns
        self.broker = Endpoint(*broker)
        self.events: list[Event] = []
        self.frame = 0
        self._next_conn = 0
        self._next_port = 50000

    # -- time ----------------------------------------------------------------------------------

    def _tick(self, dt_ms: float | None, at_ns: int | None) -> int:
        if at_ns is not None:
            self.now = at_ns
        else:
            self.now += self.step_ns if dt_ms is None else round(dt_ms * 1_000_000)
        self.frame += 1
        return self.now

    def advance(self, seconds: float) -> None:
        """Let time pass without any event."""
        self.now += round(seconds * 10**9)

    # -- connections ---------------------------------------------------------------------------

    def open(self, *, client: tuple[str, int] | None = None, version: int = 4,
             transport: str = "tcp", handshake_seen: bool = True, dt_ms: float | None = None,
             at_ns: int | None = None) -> Conn:
        """A new TCP connection (``ConnectionOpened``), with no MQTT packet yet."""
        if client is None:
            client = ("10.0.0.2", self._next_port)
            self._next_port += 1
        info = ConnectionInfo(self._next_conn, Endpoint(*client), self.broker, transport)
        self._next_conn += 1
        ts = self._tick(dt_ms, at_ns)
        self.events.append(ConnectionOpened(ts, info, self.frame, handshake_seen))
        return Conn(info, version)

    def client(self, client_id: str, *, version: int = 4, keep_alive: int = 60,
               clean_start: bool = True, session_present: bool = False, code: int = 0,
               session_expiry: int | None = None, connack: bool = True,
               dt_ms: float | None = None, at_ns: int | None = None) -> Conn:
        """Open a connection and send CONNECT (and CONNACK unless ``connack=False``)."""
        c = self.open(version=version, dt_ms=dt_ms, at_ns=at_ns)
        self.connect(c, client_id, keep_alive=keep_alive, clean_start=clean_start,
                     session_expiry=session_expiry)
        if connack:
            self.connack(c, session_present=session_present, code=code)
        return c

    def close(self, c: Conn, how: str = "fin", *, closed_by: str | None = None,
              dt_ms: float | None = None, at_ns: int | None = None) -> None:
        ts = self._tick(dt_ms, at_ns)
        self.events.append(ConnectionClosed(ts, c.info, how,
                                            None if closed_by is None else _dir(closed_by),
                                            self.frame))

    # -- raw -------------------------------------------------------------------------------------

    def send(self, c: Conn, direction: str, packet: Packet, *, wire_len: int = 0,
             dt_ms: float | None = None, at_ns: int | None = None) -> MqttPacketEvent:
        """Any packet; ``wire_len`` defaults to a plausible size."""
        ts = self._tick(dt_ms, at_ns)
        if not wire_len:
            wire_len = 4 + (len(packet.payload) + len(packet.topic)
                            if isinstance(packet, Publish) else 0)
        ev = MqttPacketEvent(ts, c.info, _dir(direction), packet, wire_len, self.frame,
                             self.frame, c.version)
        self.events.append(ev)
        return ev

    def gap(self, c: Conn, direction: str, missing_bytes: int, *, dt_ms: float | None = None,
            at_ns: int | None = None) -> None:
        ts = self._tick(dt_ms, at_ns)
        self.events.append(StreamGap(ts, c.info, _dir(direction), missing_bytes, self.frame))

    def tcp_retransmission(self, c: Conn, direction: str, length: int, *,
                           dt_ms: float | None = None, at_ns: int | None = None) -> None:
        ts = self._tick(dt_ms, at_ns)
        self.events.append(TcpRetransmission(ts, c.info, _dir(direction), length, self.frame))

    def anomaly(self, c: Conn | None, direction: str | None, kind: str, detail: str = "", *,
                dt_ms: float | None = None, at_ns: int | None = None) -> None:
        ts = self._tick(dt_ms, at_ns)
        self.events.append(Anomaly(ts, None if c is None else c.info,
                                   None if direction is None else _dir(direction),
                                   AnomalyKind(kind), detail or kind, self.frame))

    # -- MQTT packets ------------------------------------------------------------------------------

    def connect(self, c: Conn, client_id: str, *, keep_alive: int = 60, clean_start: bool = True,
                session_expiry: int | None = None, username: str | None = None,
                dt_ms: float | None = None, at_ns: int | None = None) -> None:
        props = (Properties.of(session_expiry_interval=session_expiry)
                 if session_expiry is not None else NO_PROPERTIES)
        self.send(c, "c2b", Connect(client_id, c.version, clean_start, keep_alive, username,
                                    properties=props), dt_ms=dt_ms, at_ns=at_ns)

    def connack(self, c: Conn, *, session_present: bool = False, code: int = 0,
                properties: Properties = NO_PROPERTIES, dt_ms: float | None = None,
                at_ns: int | None = None) -> None:
        self.send(c, "b2c", ConnAck(session_present, code, properties), dt_ms=dt_ms, at_ns=at_ns)

    def publish(self, c: Conn, direction: str, topic: str, payload: bytes = b"", *,
                qos: int = 0, packet_id: int | None = None, dup: bool = False,
                retain: bool = False, dt_ms: float | None = None,
                at_ns: int | None = None) -> None:
        self.send(c, direction, Publish(topic, payload, qos, dup, retain, packet_id),
                  dt_ms=dt_ms, at_ns=at_ns)

    def puback(self, c: Conn, direction: str, packet_id: int, reason: int = 0, *,
               dt_ms: float | None = None, at_ns: int | None = None) -> None:
        self.send(c, direction, PubAck(packet_id, reason), dt_ms=dt_ms, at_ns=at_ns)

    def pubrec(self, c: Conn, direction: str, packet_id: int, reason: int = 0, *,
               dt_ms: float | None = None, at_ns: int | None = None) -> None:
        self.send(c, direction, PubRec(packet_id, reason), dt_ms=dt_ms, at_ns=at_ns)

    def pubrel(self, c: Conn, direction: str, packet_id: int, reason: int = 0, *,
               dt_ms: float | None = None, at_ns: int | None = None) -> None:
        self.send(c, direction, PubRel(packet_id, reason), dt_ms=dt_ms, at_ns=at_ns)

    def pubcomp(self, c: Conn, direction: str, packet_id: int, reason: int = 0, *,
                dt_ms: float | None = None, at_ns: int | None = None) -> None:
        self.send(c, direction, PubComp(packet_id, reason), dt_ms=dt_ms, at_ns=at_ns)

    def qos1(self, c: Conn, direction: str, topic: str, payload: bytes, packet_id: int, *,
             ack_ms: float = 2.0) -> None:
        """A complete QoS 1 exchange sent in ``direction``."""
        back = "b2c" if direction == "c2b" else "c2b"
        self.publish(c, direction, topic, payload, qos=1, packet_id=packet_id)
        self.puback(c, back, packet_id, dt_ms=ack_ms)

    def qos2(self, c: Conn, direction: str, topic: str, payload: bytes, packet_id: int, *,
             step_ms: float = 2.0) -> None:
        """A complete QoS 2 exchange sent in ``direction``."""
        back = "b2c" if direction == "c2b" else "c2b"
        self.publish(c, direction, topic, payload, qos=2, packet_id=packet_id)
        self.pubrec(c, back, packet_id, dt_ms=step_ms)
        self.pubrel(c, direction, packet_id, dt_ms=step_ms)
        self.pubcomp(c, back, packet_id, dt_ms=step_ms)

    def subscribe(self, c: Conn, packet_id: int, *filters: tuple[str, int],
                  granted: tuple[int, ...] | None = None, no_local: bool = False,
                  dt_ms: float | None = None) -> None:
        """SUBSCRIBE and its SUBACK (granted QoS defaults to the requested ones)."""
        subs = tuple(Subscription(f, q, no_local) for f, q in filters)
        self.send(c, "c2b", Subscribe(packet_id, subs), dt_ms=dt_ms)
        codes = granted if granted is not None else tuple(q for _, q in filters)
        self.send(c, "b2c", SubAck(packet_id, codes))

    def unsubscribe(self, c: Conn, packet_id: int, *filters: str) -> None:
        self.send(c, "c2b", Unsubscribe(packet_id, tuple(filters)))
        self.send(c, "b2c", UnsubAck(packet_id))

    def ping(self, c: Conn, *, dt_ms: float | None = None) -> None:
        self.send(c, "c2b", PingReq(), dt_ms=dt_ms)
        self.send(c, "b2c", PingResp())

    def disconnect(self, c: Conn, direction: str = "c2b", reason: int = 0, *,
                   session_expiry: int | None = None, dt_ms: float | None = None) -> None:
        props = (Properties.of(session_expiry_interval=session_expiry)
                 if session_expiry is not None else NO_PROPERTIES)
        self.send(c, direction, Disconnect(reason, props), dt_ms=dt_ms)

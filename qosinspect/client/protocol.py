"""The client side of MQTT connections, sans-I/O: packets and ``now`` in, packets and events out.

:class:`ClientProtocol` holds what a client knows across connections (its
:class:`~qosinspect.mqtt.session.Session`, its subscriptions, the server's limits) and applies the
rules that belong to the client role; the QoS rules themselves stay in :mod:`qosinspect.mqtt.qos`
and :mod:`qosinspect.mqtt.session`. It reads no clock and touches no socket: the asyncio driver
(:mod:`.client`) passes ``time.time_ns()``, a test or a replay can pass anything. Keep-alive is a
timer the driver asks for (:meth:`ClientProtocol.next_timer`) and fires
(:meth:`ClientProtocol.handle_timer`), as in aioquic.

The rules applied here, with the statements that fix them:

- CONNECT is the first packet; nothing but CONNACK is accepted before CONNACK [MQTT-3.2.0-1],
  and a second CONNACK is a protocol error [MQTT-3.2.0-2].
- Clean start: the first CONNECT carries the requested Clean Start; a reconnection of an MQTT 5
  client asks to resume (Clean Start 0) so that the Session Expiry Interval decides; a 3.1.x
  client keeps its clean session flag (with clean session 1 the session ends with each network
  connection anyway).
- Session present: with Clean Start 1 the server must answer 0 [MQTT-3.2.2-2]; a 1 there makes
  the client close [MQTT-3.2.2-4]. When the session is not present the client discards its
  session state [MQTT-3.2.2-5]; flows in progress are reported as lost. MQTT 3.1 has no session
  present flag: with clean session 0 the session is resumed by definition (3.1, section 3.1).
- On a resumed session, unacknowledged PUBLISH packets are resent with DUP=1 and PUBRELs
  resent, original ids, original order [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.6.0-1] (done by the
  session machine), then queued messages as the Receive Maximum allows [MQTT-4.9.0-2].
- SUBSCRIBE, UNSUBSCRIBE and QoS > 0 PUBLISH share one packet id space: a new one takes an id not
  in use [MQTT-2.2.1-3].
- CONNACK properties (MQTT 5): Server Keep Alive replaces ours [MQTT-3.2.2-21]; no PUBLISH above
  Maximum QoS [MQTT-3.2.2-11], none retained when Retain Available is 0 [MQTT-3.2.2-14], none
  larger than Maximum Packet Size [MQTT-3.2.2-15]; Assigned Client Identifier is used for the
  next connections [MQTT-3.2.2-16]; Receive Maximum bounds our in-flight window [MQTT-4.9.0-1].
- Keep alive: when nothing was sent for Keep Alive seconds, send PINGREQ ([MQTT-3.1.2-23] in
  3.1.1, [MQTT-3.1.2-20] in 5.0); no PINGRESP within Keep Alive of it closes the connection
  (3.1.2.10: "within a reasonable amount of time").
- After DISCONNECT nothing more is sent [MQTT-3.14.4-1]; an MQTT 5 DISCONNECT may not raise a
  Session Expiry Interval that was 0 [MQTT-3.14.2-2].
- A protocol error by the server closes the connection, with DISCONNECT and the reason code in
  MQTT 5 (4.13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from ..errors import (
    ConfigError,
    LocalProtocolError,
    MQTTError,
    ProtocolError,
    QosinspectError,
    RemoteProtocolError,
)
from ..mqtt.codec import encode
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
    Will,
    packet_type_of,
)
from ..mqtt.properties import NO_PROPERTIES, Properties, PropertyId
from ..mqtt.qos import Completed, SendState
from ..mqtt.session import Session
from ..mqtt.topics import parse_shared, validate_topic_filter, validate_topic_name
from .acks import AckControl
from .errors import ConnectionLost, NotConnected

__all__ = ["ClientProtocol", "ConnState", "ConnectOptions", "Connected", "Output"]

NS = 1_000_000_000
_QOS_PACKETS = (Publish, PubAck, PubRec, PubRel, PubComp)
_ACKS = (PubAck, PubRec, PubRel, PubComp)
_CONNECT_PROPS = {
    "session_expiry": PropertyId.SESSION_EXPIRY_INTERVAL,
    "receive_maximum": PropertyId.RECEIVE_MAXIMUM,
    "maximum_packet_size": PropertyId.MAXIMUM_PACKET_SIZE,
}


class ConnState(IntEnum):
    DISCONNECTED = 0
    CONNECTING = 1     # CONNECT sent, waiting for CONNACK
    CONNECTED = 2
    CLOSING = 3        # DISCONNECT sent or an error found: the driver closes the socket


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """What goes into CONNECT, plus the client's own limits.

    ``session_expiry``, ``receive_maximum``, ``maximum_packet_size`` and ``properties`` are
    MQTT 5 only. ``max_inflight`` caps our outbound QoS 1/2 window (the server's Receive Maximum
    may lower it); ``max_queued`` is the queue length past which publishers are pushed back.
    ``resubscribe`` renews the subscriptions after a reconnection that did not resume the session.
    """

    client_id: str = ""
    version: int = 4
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    session_expiry: int | None = None
    receive_maximum: int | None = None
    maximum_packet_size: int | None = None
    properties: Properties = NO_PROPERTIES
    max_inflight: int = 65535
    max_queued: int = 1000
    resubscribe: bool = True

    def __post_init__(self) -> None:
        if self.version not in (3, 4, 5):
            raise ConfigError(f"MQTT protocol level {self.version} is not 3 (3.1), 4 (3.1.1) "
                              "or 5 (5.0)", field="version")
        if not 0 <= self.keep_alive <= 0xFFFF:
            raise ConfigError(f"keep alive {self.keep_alive} is not in 0..65535 seconds",
                              field="keep_alive")
        if self.version < 5:
            for name in ("session_expiry", "receive_maximum", "maximum_packet_size"):
                if getattr(self, name) is not None:
                    raise ConfigError("exists only in MQTT 5", field=name)
            if self.properties:
                raise ConfigError("CONNECT properties exist only in MQTT 5", field="properties")
            if not self.client_id and not self.clean_start:
                raise ConfigError("an empty client id needs clean session 1 before MQTT 5 "
                                  "[MQTT-3.1.3-7]", field="client_id")
            if self.password is not None and self.username is None:
                raise ConfigError("a password needs a user name before MQTT 5 [MQTT-3.1.2-22]",
                                  field="password")
        if self.session_expiry is not None and not 0 <= self.session_expiry <= 0xFFFFFFFF:
            raise ConfigError("session expiry is 0..4294967295 seconds", field="session_expiry")
        if self.receive_maximum is not None and not 1 <= self.receive_maximum <= 0xFFFF:
            raise ConfigError("receive maximum is 1..65535", field="receive_maximum")
        if self.max_inflight < 1:
            raise ConfigError("max_inflight must be at least 1", field="max_inflight")
        if self.will is not None:
            try:
                validate_topic_name(self.will.topic)
            except MQTTError as exc:
                raise ConfigError(exc.message, field="will.topic") from None
            if self.will.qos not in (0, 1, 2):
                raise ConfigError(f"will QoS {self.will.qos}", field="will.qos")
            if self.version < 5 and self.will.properties:
                raise ConfigError("will properties exist only in MQTT 5", field="will")

    def connect_properties(self) -> Properties:
        items = list(self.properties.items)
        for name, pid in _CONNECT_PROPS.items():
            value = getattr(self, name)
            if value is not None:
                items = [(p, v) for p, v in items if p != pid]
                items.append((int(pid), value))
        return Properties(tuple(items)) if items else NO_PROPERTIES


@dataclass(slots=True)
class Connected:
    """A CONNACK that accepted the connection, and what the session did about it."""

    connack: ConnAck
    session_present: bool
    keep_alive: int
    client_id: str
    resent_publish: int = 0
    resent_pubrel: int = 0
    #: Tags of the flows discarded because the session was not resumed [MQTT-3.2.2-5].
    lost: list[object] = field(default_factory=list)


@dataclass(slots=True)
class Output:
    """What the driver must do after a call: write ``send`` in order, deliver, resolve, close."""

    send: list[Packet] = field(default_factory=list)
    deliver: list[Publish] = field(default_factory=list)
    completed: list[Completed] = field(default_factory=list)
    #: The PUBREC reason code of each completed QoS 2 flow, by packet id (PUBCOMP only says
    #: whether the id was known; PUBREC says e.g. 0x10, no matching subscribers).
    pubrec_reasons: dict[int, int] = field(default_factory=dict)
    #: (tag, SUBACK or UNSUBACK) for each subscribe/unsubscribe answered.
    acked: list[tuple[object, SubAck | UnsubAck]] = field(default_factory=list)
    connected: Connected | None = None
    refused: ConnAck | None = None
    server_disconnect: Disconnect | None = None
    error: QosinspectError | None = None
    close: bool = False


class ClientProtocol:
    """One client's MQTT state across its connections (see the module docstring)."""

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        self.version = options.version
        self.session = Session(version=options.version,
                               receive_maximum=min(options.max_inflight, 0xFFFF),
                               our_receive_maximum=options.receive_maximum or 0xFFFF,
                               max_queued=options.max_queued)
        self.acks = AckControl()
        self.state = ConnState.DISCONNECTED
        self.client_id = options.client_id
        self.keep_alive = options.keep_alive
        self.connack: ConnAck | None = None
        #: CONNECT packets sent so far (the first one carries the requested Clean Start).
        self.connects = 0
        #: Subscriptions the server granted, by filter, with the SUBSCRIBE properties.
        self.subscriptions: dict[str, tuple[Subscription, Properties]] = {}
        self.max_qos = 2
        self.retain_available = True
        self.server_max_packet: int | None = None
        self.orphan_acks = 0
        self.pings = 0
        self._pending: dict[int, tuple[object, Subscribe | Unsubscribe]] = {}
        #: PUBREC reason codes of QoS 2 flows waiting for PUBCOMP, by packet id.
        self._pubrec_reasons: dict[int, int] = {}
        self._clean_now = options.clean_start
        self._last_sent_ns = 0
        self._ping_sent_ns: int | None = None
        #: No PINGREQ before this time (ns): :meth:`silence`.
        self._silent_until_ns = 0

    def silence(self, until_ns: int) -> None:
        """Send no PINGREQ until ``until_ns``: an application whose MQTT loop is blocked (the
        generator's ``silence`` fault, issue 16's keep-alive timeout reproduction)."""
        self._silent_until_ns = until_ns

    # -- connecting -------------------------------------------------------------------------------

    def connect(self, now: int) -> Connect:
        """Start a connection: the CONNECT to send first."""
        if self.state is not ConnState.DISCONNECTED:
            raise LocalProtocolError(f"connect() while {self.state.name}")
        o = self.options
        first = self.connects == 0
        self._clean_now = o.clean_start if first or self.version < 5 else False
        self.connects += 1
        self.state = ConnState.CONNECTING
        self.connack = None
        self._last_sent_ns = now
        self._ping_sent_ns = None
        return Connect(self.client_id, self.version, self._clean_now, o.keep_alive, o.username,
                       o.password, o.will, o.connect_properties() if self.version >= 5
                       else NO_PROPERTIES)

    def _on_connack(self, p: ConnAck, now: int, out: Output) -> None:
        self.connack = p
        if p.reason_code != 0:
            out.refused = p
            self._closing(out)
            return
        present = bool(p.session_present)
        if self.version == 3 and not self._clean_now:
            present = True      # MQTT 3.1: no flag; clean session 0 resumes the session
        if self._clean_now and p.session_present:
            raise RemoteProtocolError(ProtocolError(
                "CONNACK sets Session Present in answer to Clean Start 1 [MQTT-3.2.2-2]; "
                "closing [MQTT-3.2.2-4]"))
        receive_maximum = 0xFFFF
        self.keep_alive = self.options.keep_alive
        if self.version >= 5:
            props = p.properties
            if props.server_keep_alive is not None:
                self.keep_alive = props.server_keep_alive          # [MQTT-3.2.2-21]
            self.max_qos = 2 if props.maximum_qos is None else props.maximum_qos
            self.retain_available = props.retain_available != 0
            self.server_max_packet = props.maximum_packet_size
            if props.assigned_client_identifier:
                self.client_id = props.assigned_client_identifier  # [MQTT-3.2.2-16]
            receive_maximum = props.receive_maximum or 0xFFFF
        lost: list[object] = []
        if not present:                                            # [MQTT-3.2.2-5]
            lost = [flight.tag for flight in self.session.sender.in_flight.values()]
            self._pubrec_reasons.clear()
        self.state = ConnState.CONNECTED
        packets = self.session.connection_made(
            now, session_present=present, version=self.version,
            receive_maximum=min(self.options.max_inflight, receive_maximum))
        resent_publish = sum(1 for x in packets if isinstance(x, Publish) and x.dup)
        resent_pubrel = sum(1 for x in packets if isinstance(x, PubRel))
        if not present and self.options.resubscribe and self.subscriptions:
            packets.extend(self._resubscribe())
        out.connected = Connected(p, present, self.keep_alive, self.client_id, resent_publish,
                                  resent_pubrel, lost)
        self._emit(out, packets, now)

    def _resubscribe(self) -> list[Packet]:
        groups: dict[Properties, list[Subscription]] = {}
        for sub, props in self.subscriptions.values():
            groups.setdefault(props, []).append(sub)
        out: list[Packet] = []
        for props, subs in groups.items():
            pid = self.session.sender.ids.allocate()
            packet = Subscribe(pid, tuple(subs), props)
            self._pending[pid] = (None, packet)
            out.append(packet)
        return out

    # -- incoming ----------------------------------------------------------------------------------

    def receive(self, packet: Packet, now: int) -> Output:
        """Handle one packet from the server."""
        out = Output()
        try:
            self._receive(packet, now, out)
        except LocalProtocolError:
            raise                       # a bug of this client's caller, not the server's
        except RemoteProtocolError as exc:
            self._protocol_failure(exc, out)
        except MQTTError as exc:
            self._protocol_failure(RemoteProtocolError(exc), out)
        return out

    def _receive(self, packet: Packet, now: int, out: Output) -> None:
        name = packet_type_of(packet).name
        if self.state is ConnState.CONNECTING:
            if isinstance(packet, ConnAck):
                self._on_connack(packet, now, out)
                return
            raise RemoteProtocolError(ProtocolError(
                f"{name} before CONNACK [MQTT-3.2.0-1]"))
        if self.state is not ConnState.CONNECTED:
            return                              # closing: whatever still arrives is moot
        if isinstance(packet, _QOS_PACKETS):
            if isinstance(packet, PubRec):
                flight = self.session.sender.in_flight.get(packet.packet_id)
                if flight is not None and flight.state is SendState.WAIT_PUBREC:
                    self._pubrec_reasons[packet.packet_id] = int(packet.reason_code)
            result = self.session.receive(packet, now)
            for done in result.completed:
                pid = done.publish.packet_id
                if pid in self._pubrec_reasons:
                    out.pubrec_reasons[pid] = self._pubrec_reasons.pop(pid)
            out.deliver.extend(result.deliver)
            out.completed.extend(result.completed)
            self._emit(out, result.send, now)
        elif isinstance(packet, SubAck | UnsubAck):
            self._on_subscribe_ack(packet, out)
        elif isinstance(packet, PingResp):
            self._ping_sent_ns = None
        elif isinstance(packet, Disconnect):
            out.server_disconnect = packet
            self._closing(out)
        elif isinstance(packet, ConnAck):
            raise RemoteProtocolError(ProtocolError("a second CONNACK [MQTT-3.2.0-2]"))
        else:
            raise RemoteProtocolError(ProtocolError(f"a server does not send {name}"))

    def _on_subscribe_ack(self, packet: SubAck | UnsubAck, out: Output) -> None:
        pid = packet.packet_id
        entry = self._pending.get(pid)
        want = Subscribe if isinstance(packet, SubAck) else Unsubscribe
        if entry is None or not isinstance(entry[1], want):
            self.orphan_acks += 1
            return
        tag, request = entry
        if isinstance(packet, SubAck):
            assert isinstance(request, Subscribe)
            if len(packet.reason_codes) != len(request.subscriptions):
                raise RemoteProtocolError(ProtocolError(
                    f"SUBACK with {len(packet.reason_codes)} return codes for "
                    f"{len(request.subscriptions)} topic filters (3.9.3)"))
            for sub, code in zip(request.subscriptions, packet.reason_codes, strict=True):
                if code < 0x80:
                    self.subscriptions[sub.topic_filter] = (sub, request.properties)
        else:
            assert isinstance(request, Unsubscribe)
            for topic_filter in request.topic_filters:
                self.subscriptions.pop(topic_filter, None)
        del self._pending[pid]
        self.session.sender.ids.release(pid)
        out.acked.append((tag, packet))

    def fail(self, error: MQTTError) -> Output:
        """The server's bytes could not be decoded (the strict decoder raised ``error``):
        close, with DISCONNECT and the error's reason code in MQTT 5 (4.13)."""
        out = Output()
        self._protocol_failure(RemoteProtocolError(error), out)
        return out

    def _protocol_failure(self, exc: RemoteProtocolError, out: Output) -> None:
        out.error = exc
        if self.state is ConnState.CONNECTED and self.version >= 5:
            out.send.append(Disconnect(exc.reason_code))   # 4.13: tell the server why
        self._closing(out)

    def _closing(self, out: Output) -> None:
        out.close = True
        self.state = ConnState.CLOSING
        self.session.connection_lost()

    # -- outgoing ----------------------------------------------------------------------------------

    def _emit(self, out: Output, packets: list[Packet], now: int) -> None:
        """Queue packets to send; acknowledgements pass the manual ack control first."""
        for p in packets:
            if isinstance(p, _ACKS):
                out.send.extend(self.acks.apply(p, now))
            else:
                out.send.append(p)
        if out.send:
            self._last_sent_ns = now

    def check_publish(self, publish: Publish) -> None:
        """Refuse (LocalProtocolError) a PUBLISH this client may not send now."""
        if publish.qos not in (0, 1, 2):
            raise LocalProtocolError(f"QoS {publish.qos} does not exist (0, 1 or 2)")
        try:
            validate_topic_name(publish.topic)
        except MQTTError as exc:
            raise LocalProtocolError(exc.message) from None
        if self.version < 5 and publish.properties:
            raise LocalProtocolError("PUBLISH properties exist only in MQTT 5")
        if publish.qos > self.max_qos:
            raise LocalProtocolError(f"the server's Maximum QoS is {self.max_qos}: no QoS "
                                     f"{publish.qos} PUBLISH [MQTT-3.2.2-11]")
        if publish.retain and not self.retain_available:
            raise LocalProtocolError("the server has Retain Available 0: no retained PUBLISH "
                                     "[MQTT-3.2.2-14]")
        if self.server_max_packet is not None:
            size = len(encode(publish._replace(packet_id=1 if publish.qos else None),
                              self.version))
            if size > self.server_max_packet:
                raise LocalProtocolError(f"PUBLISH of {size} bytes exceeds the server's "
                                         f"Maximum Packet Size {self.server_max_packet} "
                                         "[MQTT-3.2.2-15]")

    def publish(self, publish: Publish, now: int, tag: object = None) -> list[Packet]:
        """Send an application message now, or queue it (QoS 1/2) until a connection and
        quota allow. A QoS 0 message is never queued: NotConnected when there is no connection."""
        self.check_publish(publish)
        if publish.qos == 0 and self.state is not ConnState.CONNECTED:
            raise NotConnected("not connected: a QoS 0 message is not queued")
        packets = self.session.publish(publish, now, tag=tag)
        if packets:
            self._last_sent_ns = now
        return packets

    def subscribe(self, subscriptions: list[Subscription], now: int, *,
                  properties: Properties = NO_PROPERTIES, tag: object = None) -> Subscribe:
        """A SUBSCRIBE for the filters; its SUBACK comes back in ``Output.acked`` with ``tag``."""
        if not subscriptions:
            raise LocalProtocolError("SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]")
        for sub in subscriptions:
            self._check_subscription(sub)
        if self.version < 5 and properties:
            raise LocalProtocolError("SUBSCRIBE properties exist only in MQTT 5")
        packet = Subscribe(self._new_id(), tuple(subscriptions), properties)
        self._pending[packet.packet_id] = (tag, packet)
        self._last_sent_ns = now
        return packet

    def _check_subscription(self, sub: Subscription) -> None:
        try:
            validate_topic_filter(sub.topic_filter)
            shared = parse_shared(sub.topic_filter)
        except MQTTError as exc:
            raise LocalProtocolError(exc.message) from None
        if sub.qos not in (0, 1, 2):
            raise LocalProtocolError(f"subscription QoS {sub.qos} does not exist")
        if self.version < 5:
            if sub.no_local or sub.retain_as_published or sub.retain_handling:
                raise LocalProtocolError("subscription options exist only in MQTT 5")
        else:
            if sub.retain_handling not in (0, 1, 2):
                raise LocalProtocolError(f"retain handling {sub.retain_handling} "
                                         "[MQTT-3.8.3-5]")
            if sub.no_local and shared is not None:
                raise LocalProtocolError("no local on a shared subscription [MQTT-3.8.3-4]")

    def unsubscribe(self, topic_filters: list[str], now: int, *,
                    properties: Properties = NO_PROPERTIES, tag: object = None) -> Unsubscribe:
        """An UNSUBSCRIBE; its UNSUBACK comes back in ``Output.acked`` with ``tag``."""
        if not topic_filters:
            raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter "
                                     "[MQTT-3.10.3-2]")
        for topic_filter in topic_filters:
            try:
                validate_topic_filter(topic_filter)
            except MQTTError as exc:
                raise LocalProtocolError(exc.message) from None
        if self.version < 5 and properties:
            raise LocalProtocolError("UNSUBSCRIBE properties exist only in MQTT 5")
        packet = Unsubscribe(self._new_id(), tuple(topic_filters), properties)
        self._pending[packet.packet_id] = (tag, packet)
        self._last_sent_ns = now
        return packet

    def _new_id(self) -> int:
        if self.state is not ConnState.CONNECTED:
            raise NotConnected(f"not connected ({self.state.name.lower()})")
        return self.session.sender.ids.allocate()       # shared id space [MQTT-2.2.1-3]

    def release_acks(self, now: int, kind: str | None = None,
                     packet_id: int | None = None) -> list[Packet]:
        """The held acknowledgements of ``kind`` / ``packet_id``, to send now, in order."""
        if self.state is not ConnState.CONNECTED:
            raise NotConnected("not connected: held acknowledgements ended with their "
                               "connection")
        packets: list[Packet] = list(self.acks.take(kind, packet_id))
        if packets:
            self._last_sent_ns = now
        return packets

    def disconnect(self, now: int, reason_code: int = 0, *,
                   properties: Properties = NO_PROPERTIES,
                   session_expiry: int | None = None) -> Disconnect | None:
        """The DISCONNECT to send last (None when not connected)."""
        if self.state is not ConnState.CONNECTED:
            return None
        if self.version < 5 and (reason_code or properties or session_expiry is not None):
            raise LocalProtocolError("DISCONNECT reason codes and properties exist only in "
                                     "MQTT 5")
        if session_expiry is not None:
            if not self.options.session_expiry and session_expiry:
                raise LocalProtocolError("a Session Expiry Interval of 0 in CONNECT cannot be "
                                         "raised by DISCONNECT [MQTT-3.14.2-2]")
            pid = PropertyId.SESSION_EXPIRY_INTERVAL
            properties = Properties((*properties.without(pid).items, (int(pid), session_expiry)))
        self.state = ConnState.CLOSING                  # nothing after it [MQTT-3.14.4-1]
        self.session.connection_lost()
        return Disconnect(reason_code, properties)

    # -- keep alive --------------------------------------------------------------------------------

    def next_timer(self) -> int | None:
        """When :meth:`handle_timer` must run next (ns), or None."""
        if self.state is not ConnState.CONNECTED or self.keep_alive <= 0:
            return None
        if self._ping_sent_ns is not None:
            return self._ping_sent_ns + self.keep_alive * NS
        return max(self._last_sent_ns + self.keep_alive * NS, self._silent_until_ns)

    def handle_timer(self, now: int) -> Output:
        """PINGREQ after Keep Alive seconds of silence; close when its PINGRESP is overdue."""
        out = Output()
        if self.state is not ConnState.CONNECTED or self.keep_alive <= 0:
            return out
        interval = self.keep_alive * NS
        if now < self._silent_until_ns:
            return out
        if self._ping_sent_ns is not None:
            if now >= self._ping_sent_ns + interval:
                out.error = ConnectionLost(f"no PINGRESP within the keep alive of "
                                           f"{self.keep_alive} s")
                self._closing(out)
            return out
        if now >= self._last_sent_ns + interval:
            self._emit(out, [PingReq()], now)  # [MQTT-3.1.2-23] / 5.0 [MQTT-3.1.2-20]
            self._ping_sent_ns = now
            self.pings += 1
        return out

    # -- losing the connection ---------------------------------------------------------------------

    def connection_lost(self) -> list[object]:
        """The network connection ended. Returns the tags of subscribe/unsubscribe requests that
        will never be answered; held acknowledgements are discarded."""
        tags = [tag for tag, _request in self._pending.values()]
        for pid in self._pending:
            self.session.sender.ids.release(pid)
        self._pending.clear()
        self.acks.connection_lost()
        self.session.connection_lost()
        self.state = ConnState.DISCONNECTED
        self._ping_sent_ns = None
        return tags

    def abandon(self) -> list[object]:
        """Give up the session for good: the tags of every message in flight or queued."""
        tags = [flight.tag for flight in self.session.sender.in_flight.values()]
        tags += [item.tag for item in self.session.queue]
        self.session.clear()
        self._pubrec_reasons.clear()
        return tags

    @property
    def unfinished(self) -> int:
        """QoS 1/2 messages in flight or queued."""
        return len(self.session.sender.in_flight) + len(self.session.queue)


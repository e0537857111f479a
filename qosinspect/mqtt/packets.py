"""The MQTT control packets as immutable, typed values.

Packets are ``typing.NamedTuple`` classes rather than frozen dataclasses: they are just as immutable
and typed, and a decoder can build one about seven times faster (``tuple.__new__`` against
``object.__setattr__`` per field), which is what lets the stream decoder keep up with captures of
millions of packets. Equality and hashing are made type-strict, so ``PubAck(1) != PubRec(1)``
even though both hold the same tuple.

Field names follow the project glossary: ``packet_id``, ``qos``, ``dup``, ``retain``,
``reason_code``. Reason codes are the IntEnum of their packet type (``PubAckReason`` ...), which
compare equal to plain ints.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .enums import PacketType
from .properties import NO_PROPERTIES, Properties

__all__ = [
    "Auth",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "packet_type_of",
]


def _strict_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _strict_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _strict_eq(self, other)


def _strict_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple.__hash__(self)))


class Will(NamedTuple):
    """The will message carried in CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES



class Connect(NamedTuple):
    """CONNECT. ``protocol_version`` is 3 (MQTT 3.1, "MQIsdp"), 4 (3.1.1) or 5."""

    client_id: str
    protocol_version: int = 4
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.CONNECT


class ConnAck(NamedTuple):
    """CONNACK. ``reason_code`` is a ConnAckReturnCode (3.1.x) or a ConnectReason (5.0)."""

    session_present: bool = False
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.CONNACK


class Publish(NamedTuple):
    """PUBLISH. ``packet_id`` is None exactly when ``qos`` is 0 [MQTT-2.2.1-2].

    With an MQTT 5 topic alias, the stream decoder fills ``topic`` from the alias map and keeps
    the alias in ``properties``; the codec alone leaves ``topic`` as sent (possibly empty).
    """

    topic: str
    payload: bytes = b""
    qos: int = 0
    dup: bool = False
    retain: bool = False
    packet_id: int | None = None
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PUBLISH


class PubAck(NamedTuple):
    """PUBACK: QoS 1 acknowledgement."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PUBACK


class PubRec(NamedTuple):
    """PUBREC: QoS 2, step 2 (publish received)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PUBREC


class PubRel(NamedTuple):
    """PUBREL: QoS 2, step 3 (publish release). Fixed header flags 0b0010; it has no QoS."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PUBREL


class PubComp(NamedTuple):
    """PUBCOMP: QoS 2, step 4 (publish complete)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PUBCOMP


class Subscription(NamedTuple):
    """One topic filter of SUBSCRIBE with its options (MQTT 5 3.8.3.1; 3.1.x has only ``qos``)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0



class Subscribe(NamedTuple):
    """SUBSCRIBE. Fixed header flags 0b0010."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.SUBSCRIBE


class SubAck(NamedTuple):
    """SUBACK: one return/reason code per subscription, in order."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.SUBACK


class Unsubscribe(NamedTuple):
    """UNSUBSCRIBE. Fixed header flags 0b0010."""

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.UNSUBSCRIBE


class UnsubAck(NamedTuple):
    """UNSUBACK. ``reason_codes`` is empty before MQTT 5 (3.1.x UNSUBACK carries none)."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.UNSUBACK


class PingReq(NamedTuple):
    """PINGREQ: no fields."""

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PINGREQ


class PingResp(NamedTuple):
    """PINGRESP: no fields."""

    @property
    def packet_type(self) -> PacketType:
        return PacketType.PINGRESP


class Disconnect(NamedTuple):
    """DISCONNECT. Reason code and properties exist from MQTT 5 on."""

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.DISCONNECT


class Auth(NamedTuple):
    """AUTH (MQTT 5 only): extended authentication exchange."""

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def packet_type(self) -> PacketType:
        return PacketType.AUTH


Packet = (Connect | ConnAck | Publish | PubAck | PubRec | PubRel | PubComp | Subscribe | SubAck
          | Unsubscribe | UnsubAck | PingReq | PingResp | Disconnect | Auth)

_TYPE_OF: dict[type, PacketType] = {
    Connect: PacketType.CONNECT, ConnAck: PacketType.CONNACK, Publish: PacketType.PUBLISH,
    PubAck: PacketType.PUBACK, PubRec: PacketType.PUBREC, PubRel: PacketType.PUBREL,
    PubComp: PacketType.PUBCOMP, Subscribe: PacketType.SUBSCRIBE, SubAck: PacketType.SUBACK,
    Unsubscribe: PacketType.UNSUBSCRIBE, UnsubAck: PacketType.UNSUBACK,
    PingReq: PacketType.PINGREQ, PingResp: PacketType.PINGRESP,
    Disconnect: PacketType.DISCONNECT, Auth: PacketType.AUTH,
}


for _cls in (Will, Subscription, *_TYPE_OF):
    _cls.__eq__ = _strict_eq  # type: ignore[assignment]
    _cls.__ne__ = _strict_ne  # type: ignore[assignment]
    _cls.__hash__ = _strict_hash  # type: ignore[assignment]


def packet_type_of(packet: Packet) -> PacketType:
    """The control packet type of a packet object."""
    return _TYPE_OF[type(packet)]

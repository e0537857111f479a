"""Packets to bytes for MQTT 3.1, 3.1.1 and 5.0: the canonical form, checked before it is sent.

``encode(packet, version)`` writes the shortest variable byte integers and the MQTT 5
acknowledgements in their short forms (remaining length 2 when the reason is Success with no
properties, 3 when only a reason code is needed), as mosquitto does; DISCONNECT and AUTH likewise
drop a Success reason with no properties (remaining length 0).

The rule that shapes this module: **whatever ``encode`` accepts, ``decode`` gives back equal**.
Every check the decoder makes on a peer's bytes is made here on the caller's packet, which is
refused with :class:`~qosinspect.errors.LocalProtocolError` (h11's "local" error: we were asked to
send something the protocol forbids) instead of being sent for the peer to reject. The property
tests feed arbitrary packets through ``encode`` to hold it to that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import LocalProtocolError, TopicFilterInvalid
from .enums import (
    AuthReason,
    ConnAckReturnCode,
    ConnectReason,
    DisconnectReason,
    PacketType,
    PubAckReason,
    PubCompReason,
    PubRecReason,
    PubRelReason,
    SubAckReason,
    SubAckReturnCode,
    UnsubAckReason,
)
from .packets import (
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
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from .properties import WILL_CONTEXT, PropertyId
from .topics import parse_shared, validate_topic_filter
from .wire import encode_binary, encode_properties, encode_utf8, encode_varint

__all__ = ["encode"]

_Encoder = Callable[[Any, int], tuple[int, bytes]]
_TOPIC_ALIAS = int(PropertyId.TOPIC_ALIAS)


def encode(packet: Packet, version: int = 4) -> bytes:
    """The bytes of ``packet`` for protocol level ``version`` (a CONNECT uses its own).

    Raises LocalProtocolError for a packet that cannot be sent in that version: properties or
    reason codes before MQTT 5, a reason code the packet type does not define, a QoS > 0 PUBLISH
    without a packet id, a wildcard in a topic name, a bad topic filter, a property the packet
    may not carry, a string with U+0000 or longer than 65,535 bytes, a packet longer than MQTT can
    frame. TypeError for an object that is not a packet.
    """
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    if version not in (3, 4, 5):
        raise LocalProtocolError(f"protocol level {version} is not 3, 4 or 5")
    try:
        first, body = encoder(packet, version)
        return bytes((first,)) + encode_varint(len(body)) + body
    except (ValueError, OverflowError) as exc:  # UnicodeEncodeError (lone surrogates) included
        raise LocalProtocolError(f"{type(packet).__name__}: {exc}") from None


# --- shared checks -------------------------------------------------------------------------

def _packet_id(packet: Any, name: str) -> bytes:
    pid = packet.packet_id
    if not isinstance(pid, int) or not 0 < pid <= 0xFFFF:
        raise LocalProtocolError(f"{name} packet id {pid!r} is not in 1..65535 [MQTT-2.2.1-3]")
    return pid.to_bytes(2, "big")


def _properties(packet: Any, version: int, context: int, name: str) -> bytes:
    if version < 5:
        if packet.properties:
            raise LocalProtocolError(f"{name}: properties exist only in MQTT 5")
        return b""
    return encode_properties(packet.properties, context)


def _reason(code: int, enum: Any, name: str) -> int:
    value = int(code)
    if value not in enum._value2member_map_:
        raise LocalProtocolError(f"{name} reason code 0x{value:02x} is not defined for this "
                                 "packet")
    return value


def _topic_name(topic: str, what: str, allow_empty: bool = False) -> bytes:
    if "+" in topic or "#" in topic:
        raise LocalProtocolError(f"{what} {topic!r} contains a wildcard [MQTT-3.3.2-2]")
    if not topic and not allow_empty:
        raise LocalProtocolError(f"{what} is empty [MQTT-4.7.3-1]")
    return encode_utf8(topic, what)


def _topic_filter(topic_filter: str) -> bool:
    """Check a filter; True when it is a shared subscription."""
    try:
        validate_topic_filter(topic_filter)
        return parse_shared(topic_filter) is not None
    except TopicFilterInvalid as exc:
        raise LocalProtocolError(str(exc)) from None


# --- one encoder per packet type -------------------------------------------------------------

def _enc_connect(p: Connect, version: int) -> tuple[int, bytes]:
    level = p.protocol_version
    if level not in (3, 4, 5):
        raise LocalProtocolError(f"CONNECT protocol level {level} is not 3, 4 or 5")
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise LocalProtocolError(f"will QoS {will.qos} [MQTT-3.1.2-12]")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if p.username is not None:
        flags |= 0x80
    if p.password is not None:
        if p.username is None and level < 5:
            raise LocalProtocolError("a password needs a user name before MQTT 5 "
                                     "[MQTT-3.1.2-22]")
        flags |= 0x40
    if not 0 <= p.keep_alive <= 0xFFFF:
        raise LocalProtocolError(f"keep alive {p.keep_alive} is not in 0..65535")
    out = bytearray(b"\x00\x06MQIsdp" if level == 3 else b"\x00\x04MQTT")
    out += bytes((level, flags)) + p.keep_alive.to_bytes(2, "big")
    out += _properties(p, level, PacketType.CONNECT, "CONNECT")
    out += encode_utf8(p.client_id, "client identifier")
    if will is not None:
        if level == 5:
            out += encode_properties(will.properties, WILL_CONTEXT)
        elif will.properties:
            raise LocalProtocolError("will properties exist only in MQTT 5")
        out += _topic_name(will.topic, "will topic") + encode_binary(will.payload,
                                                                     "will payload")
    if p.username is not None:
        out += encode_utf8(p.username, "user name")
    if p.password is not None:
        out += encode_binary(p.password, "password")
    return 0x10, bytes(out)


def _enc_connack(p: ConnAck, version: int) -> tuple[int, bytes]:
    if version >= 5 and type(p.reason_code) is ConnAckReturnCode and not p.properties:
        # The 3.1.1 CONNACK a server that speaks 3.1.1 only sends an MQTT 5 client (the codec
        # reads two bytes as one): written as it is, so what the decoder accepts round-trips.
        return _enc_connack(p, 4)
    if version >= 5:
        code = _reason(p.reason_code, ConnectReason, "CONNACK")
    else:
        code = _reason(p.reason_code, ConnAckReturnCode, "CONNACK")
    if p.session_present:
        if version == 3:
            raise LocalProtocolError("an MQTT 3.1 CONNACK has no session present flag")
        if code:
            raise LocalProtocolError("a CONNACK refusing the connection cannot set session "
                                     "present [MQTT-3.2.2-4]")
    body = bytes((1 if p.session_present else 0, code))
    return 0x20, body + _properties(p, version, PacketType.CONNACK, "CONNACK")


def _enc_publish(p: Publish, version: int) -> tuple[int, bytes]:
    qos = p.qos
    if qos not in (0, 1, 2):
        raise LocalProtocolError(f"PUBLISH QoS {qos} [MQTT-3.3.1-4]")
    first = 0x30 | (qos << 1) | (8 if p.dup else 0) | (1 if p.retain else 0)
    props = _properties(p, version, PacketType.PUBLISH, "PUBLISH")
    # An MQTT 5 PUBLISH may leave the topic empty when a Topic Alias stands for it.
    has_alias = version >= 5 and any(pid == _TOPIC_ALIAS for pid, _ in p.properties.items)
    topic = _topic_name(p.topic, "topic name", allow_empty=has_alias)
    if qos:
        pid = _packet_id(p, "PUBLISH")
    elif p.dup:
        raise LocalProtocolError("DUP must be 0 at QoS 0 [MQTT-3.3.1-2]")
    elif p.packet_id is not None:
        raise LocalProtocolError("a QoS 0 PUBLISH has no packet id [MQTT-2.2.1-2]")
    else:
        pid = b""
    return first, topic + pid + props + bytes(p.payload)


def _make_ack_encoder(first: int, name: str, reasons: Any, ptype: PacketType) -> _Encoder:
    def encode_ack(p: Any, version: int) -> tuple[int, bytes]:
        pid = _packet_id(p, name)
        if version < 5:
            if p.reason_code or p.properties:
                raise LocalProtocolError(f"{name}: reason codes and properties exist only in "
                                         "MQTT 5")
            return first, pid
        code = _reason(p.reason_code, reasons, name)
        if not p.properties:
            return first, pid + bytes((code,)) if code else pid
        return first, pid + bytes((code,)) + encode_properties(p.properties, ptype)

    return encode_ack


def _enc_subscribe(p: Subscribe, version: int) -> tuple[int, bytes]:
    out = bytearray(_packet_id(p, "SUBSCRIBE"))
    out += _properties(p, version, PacketType.SUBSCRIBE, "SUBSCRIBE")
    if not p.subscriptions:
        raise LocalProtocolError("SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]")
    for sub in p.subscriptions:
        shared = _topic_filter(sub.topic_filter)
        if sub.qos not in (0, 1, 2):
            raise LocalProtocolError(f"subscription QoS {sub.qos}")
        options = sub.qos
        if version >= 5:
            if sub.retain_handling not in (0, 1, 2):
                raise LocalProtocolError(f"retain handling {sub.retain_handling} is not 0, 1 "
                                         "or 2")
            if sub.no_local and shared:
                raise LocalProtocolError("no local on a shared subscription [MQTT-3.8.3-4]")
            options |= ((4 if sub.no_local else 0) | (8 if sub.retain_as_published else 0)
                        | (sub.retain_handling << 4))
        elif sub.no_local or sub.retain_as_published or sub.retain_handling:
            raise LocalProtocolError("subscription options exist only in MQTT 5")
        out += encode_utf8(sub.topic_filter, "topic filter") + bytes((options,))
    return 0x82, bytes(out)


def _enc_suback(p: SubAck, version: int) -> tuple[int, bytes]:
    if not p.reason_codes:
        raise LocalProtocolError("SUBACK needs one return code per subscription")
    enum = SubAckReason if version >= 5 else SubAckReturnCode
    codes = bytes(_reason(c, enum, "SUBACK") for c in p.reason_codes)
    return 0x90, (_packet_id(p, "SUBACK") + _properties(p, version, PacketType.SUBACK, "SUBACK")
                  + codes)


def _enc_unsubscribe(p: Unsubscribe, version: int) -> tuple[int, bytes]:
    out = bytearray(_packet_id(p, "UNSUBSCRIBE"))
    out += _properties(p, version, PacketType.UNSUBSCRIBE, "UNSUBSCRIBE")
    if not p.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]")
    for topic_filter in p.topic_filters:
        _topic_filter(topic_filter)
        out += encode_utf8(topic_filter, "topic filter")
    return 0xA2, bytes(out)


def _enc_unsuback(p: UnsubAck, version: int) -> tuple[int, bytes]:
    pid = _packet_id(p, "UNSUBACK")
    if version < 5:
        if p.reason_codes or p.properties:
            raise LocalProtocolError("UNSUBACK reason codes and properties exist only in MQTT 5")
        return 0xB0, pid
    if not p.reason_codes:
        raise LocalProtocolError("an MQTT 5 UNSUBACK needs one reason code per topic filter")
    codes = bytes(_reason(c, UnsubAckReason, "UNSUBACK") for c in p.reason_codes)
    return 0xB0, pid + encode_properties(p.properties, PacketType.UNSUBACK) + codes


def _enc_empty(first: int) -> _Encoder:
    def encode_empty(p: Any, version: int) -> tuple[int, bytes]:
        return first, b""

    return encode_empty


def _enc_disconnect(p: Disconnect, version: int) -> tuple[int, bytes]:
    if version < 5:
        if p.reason_code or p.properties:
            raise LocalProtocolError("DISCONNECT reason codes and properties exist only in "
                                     "MQTT 5")
        return 0xE0, b""
    code = _reason(p.reason_code, DisconnectReason, "DISCONNECT")
    if not p.properties:
        return 0xE0, bytes((code,)) if code else b""
    return 0xE0, bytes((code,)) + encode_properties(p.properties, PacketType.DISCONNECT)


def _enc_auth(p: Auth, version: int) -> tuple[int, bytes]:
    if version < 5:
        raise LocalProtocolError("AUTH exists only in MQTT 5")
    code = _reason(p.reason_code, AuthReason, "AUTH")
    if not p.properties and not code:
        return 0xF0, b""
    return 0xF0, bytes((code,)) + encode_properties(p.properties, PacketType.AUTH)


_ENCODERS: dict[type, _Encoder] = {
    Connect: _enc_connect, ConnAck: _enc_connack, Publish: _enc_publish,
    PubAck: _make_ack_encoder(0x40, "PUBACK", PubAckReason, PacketType.PUBACK),
    PubRec: _make_ack_encoder(0x50, "PUBREC", PubRecReason, PacketType.PUBREC),
    PubRel: _make_ack_encoder(0x62, "PUBREL", PubRelReason, PacketType.PUBREL),
    PubComp: _make_ack_encoder(0x70, "PUBCOMP", PubCompReason, PacketType.PUBCOMP),
    Subscribe: _enc_subscribe, SubAck: _enc_suback, Unsubscribe: _enc_unsubscribe,
    UnsubAck: _enc_unsuback, PingReq: _enc_empty(0xC0), PingResp: _enc_empty(0xD0),
    Disconnect: _enc_disconnect, Auth: _enc_auth,
}

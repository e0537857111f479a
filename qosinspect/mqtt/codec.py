"""Bytes to packets and back, for MQTT 3.1, 3.1.1 and 5.0. No I/O, no clock, no state.

``decode(buf, version)`` returns ``(packet, size)`` or ``NEED_DATA`` when ``buf`` holds only part
of a packet: short input is never an error, so a caller can feed bytes as they arrive. Bytes that
can never become a valid packet raise a subclass of :class:`~qosinspect.errors.MQTTError`, carrying
the reason code a peer should be sent and the byte offset of the problem.

``encode(packet, version)`` (in :mod:`.encoder`, re-exported here) writes the canonical form
and refuses, with LocalProtocolError, any packet this decoder would refuse.

Fixed-header rules: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry flags 0b0010 [MQTT-3.6.1-1]
[MQTT-3.8.1-1] [MQTT-3.10.1-1] (MQTT 3.1 also let them carry DUP), every other non-PUBLISH
packet 0 [MQTT-2.2.2-1]; a PUBLISH with QoS 3 is malformed [MQTT-3.3.1-4], and so is DUP on QoS 0
[MQTT-3.3.1-2]. Packet type 0 is reserved, AUTH exists only in MQTT 5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..errors import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    TopicFilterInvalid,
    TopicNameInvalid,
    UnsupportedProtocolVersion,
)
from .encoder import encode
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
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from .properties import NO_PROPERTIES, WILL_CONTEXT, Properties, PropertyId
from .topics import parse_shared, validate_topic_filter
from .wire import (
    read_binary,
    read_properties,
    read_utf8,
)

__all__ = [
    "MAX_PACKET_SIZE",
    "NEED_DATA",
    "NeedData",
    "decode",
    "decode_body",
    "encode",
    "first_byte_offset",
    "parse_fixed_header",
    "relocated",
]

#: The largest packet MQTT can express: 1 type byte, 4 length bytes, 268,435,455 bytes of body.
MAX_PACKET_SIZE: Final = 268_435_460


class NeedData:
    """The answer of the decoder when the buffer holds only part of a packet."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __bool__(self) -> bool:
        return False


NEED_DATA: Final = NeedData()

_new = tuple.__new__
_PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = Publish, PubAck, PubRec, PubRel, PubComp

Decoder = Callable[[bytes, int, int, int, int, "dict[bytes, str] | None"], Packet]


def parse_fixed_header(buf: Any, pos: int, end: int) -> tuple[int, int, int] | None:
    """``(first_byte, remaining_length, header_size)`` of the packet at ``pos``.

    None when ``buf[pos:end]`` is too short to hold the whole fixed header; raises
    MalformedPacket when the remaining length is not a valid variable byte integer.
    """
    if end - pos < 2:
        return None
    first = buf[pos]
    byte = buf[pos + 1]
    if byte < 0x80:
        return first, byte, 2
    value = byte & 0x7F
    i = pos + 2
    shift = 7
    while True:
        if i >= end:
            return None
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            if byte == 0:
                raise MalformedPacket("remaining length not in its shortest form [MQTT-1.5.5-1]",
                                      offset=pos + 1, packet_type=first >> 4)
            return first, value, i - pos
        shift += 7
        if shift >= 28:
            raise MalformedPacket("remaining length longer than 4 bytes", offset=pos + 1,
                                  packet_type=first >> 4)


def decode(buf: bytes | bytearray | memoryview, version: int = 4, *,
           max_packet_size: int = MAX_PACKET_SIZE) -> tuple[Packet, int] | NeedData:
    """Decode the packet at the start of ``buf``: ``(packet, bytes used)`` or ``NEED_DATA``.

    ``version`` is the protocol level in force on the connection (3, 4 or 5); a CONNECT carries
    its own. Offsets in errors count from the start of ``buf``.
    """
    n = len(buf)
    header = parse_fixed_header(buf, 0, n)
    if header is None:
        return NEED_DATA
    first, length, hlen = header
    size = hlen + length
    if size > max_packet_size:
        raise PacketTooLarge(f"packet of {size} bytes exceeds the maximum packet size "
                             f"{max_packet_size}", offset=0, packet_type=first >> 4)
    if size > n:
        return NEED_DATA
    data = buf if isinstance(buf, bytes) else bytes(buf[:size])
    return decode_body(data, first, hlen, size, version), size


def decode_body(buf: bytes, first: int, start: int, end: int, version: int,
                topics: dict[bytes, str] | None = None) -> Packet:
    """Decode the body ``buf[start:end]`` of a packet whose first byte is ``first``.

    ``topics`` is an optional cache of validated topic names by their raw bytes (the stream
    decoder keeps one per direction: most captures reuse a handful of topics).
    """
    try:
        return _DECODERS[first >> 4](buf, first & 0x0F, start, end, version, topics)
    except (MalformedPacket, ProtocolError, TopicNameInvalid, TopicFilterInvalid,
            UnsupportedProtocolVersion) as exc:
        if exc.packet_type is None:
            exc.packet_type = first >> 4
        raise


# --- decoders ------------------------------------------------------------------------------

def relocated(exc: MQTTError, offset: int | None) -> MQTTError:
    """A copy of ``exc`` placed at ``offset`` (its message names the offset, so it is rebuilt)."""
    return type(exc)(exc.message, offset=offset, reason_code=exc.reason_code,
                     packet_type=exc.packet_type)


def first_byte_offset(start: int, end: int) -> int:
    """Offset of a packet's first byte, from the start and end of its body.

    The remaining length in front of the body is in its shortest form (longer ones are refused
    before any body is decoded), so its size follows from the length alone.
    """
    length = end - start
    return start - (2 if length < 0x80 else 3 if length < 0x4000 else 4 if length < 0x200000
                    else 5)


def _bad_flags(name: str, flags: int, start: int, end: int) -> MalformedPacket:
    # 3.1.1 [MQTT-2.2.2-2], 5.0 [MQTT-2.1.3-1]: invalid flags make the packet malformed.
    return MalformedPacket(f"{name} with reserved fixed-header flags 0x{flags:x} "
                           "[MQTT-2.2.2-2]", offset=first_byte_offset(start, end))


def _check_empty(name: str, flags: int, start: int, end: int) -> None:
    if flags:
        raise _bad_flags(name, flags, start, end)
    if end != start:
        raise MalformedPacket(f"{name} must have remaining length 0, not {end - start}",
                              offset=start)


def _trailing(name: str, pos: int, end: int) -> MalformedPacket:
    return MalformedPacket(f"{name} has {end - pos} unexpected trailing bytes", offset=pos)


def _packet_id(buf: Any, pos: int, end: int, name: str) -> int:
    if pos + 2 > end:
        raise MalformedPacket(f"{name}: packet identifier runs past the end of the packet",
                              offset=pos)
    pid: int = (buf[pos] << 8) | buf[pos + 1]
    if not pid:
        raise MalformedPacket(f"{name}: packet identifier 0 [MQTT-2.2.1-3]", offset=pos)
    return pid


def _dec_reserved(buf: bytes, flags: int, start: int, end: int, version: int,
                  topics: dict[bytes, str] | None) -> Packet:
    raise MalformedPacket("reserved control packet type 0", offset=first_byte_offset(start, end),
                          packet_type=0)


def _dec_connect(buf: bytes, flags: int, start: int, end: int, version: int,
                 topics: dict[bytes, str] | None) -> Packet:
    if flags:
        raise _bad_flags("CONNECT", flags, start, end)
    name, pos = read_utf8(buf, start, end, "protocol name")
    if pos + 4 > end:
        raise MalformedPacket("CONNECT variable header runs past the end of the packet",
                              offset=pos)
    level = buf[pos]
    if not ((name == "MQTT" and level in (4, 5)) or (name == "MQIsdp" and level == 3)):
        raise UnsupportedProtocolVersion(
            f"unsupported protocol name {name!r} with level {level}", offset=pos,
            reason_code=0x84 if level == 5 else 0x01)
    cflags = buf[pos + 1]
    keep_alive = (buf[pos + 2] << 8) | buf[pos + 3]
    if cflags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is set [MQTT-3.1.2-3]", offset=pos + 1)
    will_flag = bool(cflags & 0x04)
    will_qos = (cflags >> 3) & 0x03
    will_retain = bool(cflags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("will QoS or retain set without the will flag "
                              "[MQTT-3.1.2-11] [MQTT-3.1.2-13]", offset=pos + 1)
    if will_qos == 3:
        raise MalformedPacket("will QoS 3 [MQTT-3.1.2-14]", offset=pos + 1)
    has_user = bool(cflags & 0x80)
    has_pass = bool(cflags & 0x40)
    if has_pass and not has_user and level < 5:
        raise MalformedPacket("password flag without user name flag [MQTT-3.1.2-22]",
                              offset=pos + 1)
    pos += 4
    props = NO_PROPERTIES
    if level == 5:
        props, pos = read_properties(buf, pos, end, PacketType.CONNECT)
    client_id, pos = read_utf8(buf, pos, end, "client identifier")
    will = None
    if will_flag:
        wprops = NO_PROPERTIES
        if level == 5:
            wprops, pos = read_properties(buf, pos, end, WILL_CONTEXT)
        wtopic_at = pos
        wtopic, pos = read_utf8(buf, pos, end, "will topic")
        if not wtopic or "+" in wtopic or "#" in wtopic:
            raise TopicNameInvalid(f"invalid will topic {wtopic!r}", offset=wtopic_at)
        wpayload, pos = read_binary(buf, pos, end, "will payload")
        will = Will(wtopic, wpayload, will_qos, will_retain, wprops)
    username = None
    password = None
    if has_user:
        username, pos = read_utf8(buf, pos, end, "user name")
    if has_pass:
        password, pos = read_binary(buf, pos, end, "password")
    if pos != end:
        raise _trailing("CONNECT", pos, end)
    return Connect(client_id, level, bool(cflags & 0x02), keep_alive, username, password,
                   will, props)


def _dec_connack(buf: bytes, flags: int, start: int, end: int, version: int,
                 topics: dict[bytes, str] | None) -> Packet:
    if flags:
        raise _bad_flags("CONNACK", flags, start, end)
    if end - start < 2:
        raise MalformedPacket("CONNACK shorter than 2 bytes", offset=start)
    ack_flags = buf[start]
    code = buf[start + 1]
    if version >= 5 and end - start == 2:
        # An MQTT 5 CONNACK has at least a property length: two bytes are a 3.1.1 CONNACK, which
        # a server that speaks 3.1.1 only sends an MQTT 5 CONNECT (return code 1, unacceptable
        # protocol version [MQTT-3.1.2-2]) before it closes. Read it as what it is.
        return _dec_connack(buf, flags, start, end, 4, topics)
    if version >= 5:
        if ack_flags & 0xFE:
            raise MalformedPacket("CONNACK reserved flags set [MQTT-3.2.2-1]", offset=start)
        reason: int = _enum(ConnectReason, code, "CONNACK reason code", start + 1)
        props, pos = read_properties(buf, start + 2, end, PacketType.CONNACK)
        if pos != end:
            raise _trailing("CONNACK", pos, end)
    else:
        if end - start != 2:
            raise MalformedPacket(f"CONNACK remaining length {end - start}, expected 2",
                                  offset=start)
        if version == 4 and ack_flags & 0xFE:
            raise MalformedPacket("CONNACK reserved flags set [MQTT-3.2.2-1]", offset=start)
        reason = _enum(ConnAckReturnCode, code, "CONNACK return code", start + 1)
        props = NO_PROPERTIES
        if version == 3:
            ack_flags = 0  # MQTT 3.1 has no session present flag: the byte is reserved
    session_present = bool(ack_flags & 1)
    if session_present and reason:
        raise ProtocolError("CONNACK refuses the connection but sets session present "
                            "[MQTT-3.2.2-4]", offset=start)
    return ConnAck(session_present, reason, props)


def _dec_publish(buf: bytes, flags: int, start: int, end: int, version: int,
                 topics: dict[bytes, str] | None) -> Packet:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]",
                              offset=first_byte_offset(start, end))
    dup = flags >= 8
    if dup and not qos:
        raise MalformedPacket("PUBLISH with DUP set at QoS 0 [MQTT-3.3.1-2]",
                              offset=first_byte_offset(start, end))
    if start + 2 > end:
        raise MalformedPacket("PUBLISH topic length runs past the end of the packet",
                              offset=start)
    pos = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if pos > end:
        raise MalformedPacket("PUBLISH topic runs past the end of the packet", offset=start)
    raw = buf[start + 2:pos]
    topic = topics.get(raw) if topics is not None else None
    if topic is None:
        topic = _publish_topic(raw, start, version)
        # Never the empty topic: it is valid only in MQTT 5, and the cache outlives a CONNECT
        # that changes the version.
        if topics is not None and topic and len(topics) < 4096:
            topics[raw] = topic
    pid = None
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("PUBLISH packet identifier runs past the end of the packet",
                                  offset=pos)
        pid = (buf[pos] << 8) | buf[pos + 1]
        if not pid:
            raise MalformedPacket("PUBLISH with packet identifier 0 [MQTT-2.2.1-3]",
                                  offset=pos)
        pos += 2
    props = NO_PROPERTIES
    if version >= 5:
        props, pos = read_properties(buf, pos, end, PacketType.PUBLISH)
        if not topic and props.topic_alias is None:
            raise ProtocolError("PUBLISH with an empty topic and no topic alias "
                                "[MQTT-3.3.2-1]", offset=start)
    return _new(_PUBLISH, (topic, buf[pos:end], qos, dup, flags & 1 == 1, pid, props))


def _publish_topic(raw: bytes, at: int, version: int) -> str:
    try:
        topic = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"topic name: invalid UTF-8 [MQTT-1.5.4-1] ({exc.reason})",
                              offset=at + 2 + exc.start) from None
    if "\x00" in topic:
        raise MalformedPacket("topic name contains U+0000 [MQTT-1.5.4-2]",
                              offset=at + 2 + topic.index("\x00"))
    if "+" in topic or "#" in topic:
        raise TopicNameInvalid(f"topic name {topic!r} contains a wildcard [MQTT-3.3.2-2]",
                               offset=at + 2)
    if not topic and version < 5:
        raise TopicNameInvalid("empty topic name [MQTT-4.7.3-1]", offset=at)
    return topic


def _enum(enum: Any, code: int, what: str, at: int) -> Any:
    member = enum._value2member_map_.get(code)
    if member is None:
        raise MalformedPacket(f"{what} 0x{code:02x} is not defined for this packet", offset=at)
    return member


def _make_ack_decoder(cls: type, ptype: PacketType, reasons: Any, want_flags: int) -> Decoder:
    name = ptype.name
    success = reasons(0)
    by_code = reasons._value2member_map_

    def decode_ack(buf: bytes, flags: int, start: int, end: int, version: int,
                   topics: dict[bytes, str] | None) -> Packet:
        if flags != want_flags and not (version == 3 and flags == want_flags | 8):
            raise _bad_flags(name, flags, start, end)
        length = end - start
        if length == 2:
            pid = (buf[start] << 8) | buf[start + 1]
            if not pid:
                raise MalformedPacket(f"{name}: packet identifier 0 [MQTT-2.2.1-3]",
                                      offset=start)
            return _new(cls, (pid, success, NO_PROPERTIES))
        if version < 5 or length < 2:
            raise MalformedPacket(f"{name} remaining length {length}, expected 2",
                                  offset=start)
        pid = _packet_id(buf, start, end, name)
        code = buf[start + 2]
        reason = by_code.get(code)
        if reason is None:
            raise MalformedPacket(f"{name} reason code 0x{code:02x} is not defined for "
                                  "this packet", offset=start + 2)
        props = NO_PROPERTIES
        if length > 3:
            props, pos = read_properties(buf, start + 3, end, ptype)
            if pos != end:
                raise _trailing(name, pos, end)
        return _new(cls, (pid, reason, props))

    return decode_ack


def _dec_subscribe(buf: bytes, flags: int, start: int, end: int, version: int,
                   topics: dict[bytes, str] | None) -> Packet:
    if flags != 2 and not (version == 3 and flags == 0x0A):
        raise _bad_flags("SUBSCRIBE", flags, start, end)
    pid = _packet_id(buf, start, end, "SUBSCRIBE")
    pos = start + 2
    props = NO_PROPERTIES
    if version >= 5:
        props, pos = read_properties(buf, pos, end, PacketType.SUBSCRIBE)
    subs: list[Subscription] = []
    while pos < end:
        at = pos
        topic_filter, pos = read_utf8(buf, pos, end, "topic filter")
        if pos >= end:
            raise MalformedPacket("SUBSCRIBE topic filter without its options byte",
                                  offset=pos)
        options = buf[pos]
        if version >= 5:
            if options & 0xC0:
                raise MalformedPacket("SUBSCRIBE options: reserved bits set [MQTT-3.8.3-5]",
                                      offset=pos)
        elif options & 0xFC:
            raise MalformedPacket("SUBSCRIBE requested QoS: reserved bits set [MQTT-3-8.3-4]",
                                  offset=pos)
        qos = options & 0x03
        if qos == 3:
            if version >= 5:  # "It is a Protocol Error if the Maximum QoS field has the value 3"
                raise ProtocolError("SUBSCRIBE maximum QoS 3 (MQTT 5.0 3.8.3.1)", offset=pos)
            raise MalformedPacket("SUBSCRIBE requested QoS 3 [MQTT-3-8.3-4]", offset=pos)
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise ProtocolError("SUBSCRIBE retain handling 3", offset=pos)
        no_local = bool(options & 0x04)
        options_at = pos
        pos += 1
        try:
            validate_topic_filter(topic_filter)
            shared = parse_shared(topic_filter)
        except TopicFilterInvalid as exc:
            raise relocated(exc, at) from None
        if shared is not None and no_local:
            raise ProtocolError("no local on a shared subscription [MQTT-3.8.3-4]",
                                offset=options_at)
        subs.append(Subscription(topic_filter, qos, no_local, bool(options & 0x08),
                                 retain_handling))
    if not subs:
        raise ProtocolError("SUBSCRIBE without any topic filter [MQTT-3.8.3-3]", offset=pos)
    return Subscribe(pid, tuple(subs), props)


def _dec_suback(buf: bytes, flags: int, start: int, end: int, version: int,
                topics: dict[bytes, str] | None) -> Packet:
    if flags:
        raise _bad_flags("SUBACK", flags, start, end)
    pid = _packet_id(buf, start, end, "SUBACK")
    pos = start + 2
    props = NO_PROPERTIES
    enum: Any = SubAckReturnCode
    if version >= 5:
        props, pos = read_properties(buf, pos, end, PacketType.SUBACK)
        enum = SubAckReason
    if pos >= end:
        raise ProtocolError("SUBACK without any return code", offset=pos)
    codes = tuple(_enum(enum, buf[i], "SUBACK return code", i) for i in range(pos, end))
    return SubAck(pid, codes, props)


def _dec_unsubscribe(buf: bytes, flags: int, start: int, end: int, version: int,
                     topics: dict[bytes, str] | None) -> Packet:
    if flags != 2 and not (version == 3 and flags == 0x0A):
        raise _bad_flags("UNSUBSCRIBE", flags, start, end)
    pid = _packet_id(buf, start, end, "UNSUBSCRIBE")
    pos = start + 2
    props = NO_PROPERTIES
    if version >= 5:
        props, pos = read_properties(buf, pos, end, PacketType.UNSUBSCRIBE)
    filters: list[str] = []
    while pos < end:
        at = pos
        topic_filter, pos = read_utf8(buf, pos, end, "topic filter")
        try:
            validate_topic_filter(topic_filter)
        except TopicFilterInvalid as exc:
            raise relocated(exc, at) from None
        filters.append(topic_filter)
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without any topic filter [MQTT-3.10.3-2]", offset=pos)
    return Unsubscribe(pid, tuple(filters), props)


def _dec_unsuback(buf: bytes, flags: int, start: int, end: int, version: int,
                  topics: dict[bytes, str] | None) -> Packet:
    if flags:
        raise _bad_flags("UNSUBACK", flags, start, end)
    pid = _packet_id(buf, start, end, "UNSUBACK")
    if version < 5:
        if end - start != 2:
            raise MalformedPacket(f"UNSUBACK remaining length {end - start}, expected 2",
                                  offset=start)
        return UnsubAck(pid)
    props, pos = read_properties(buf, start + 2, end, PacketType.UNSUBACK)
    if pos >= end:
        raise ProtocolError("UNSUBACK without any reason code", offset=pos)
    codes = tuple(_enum(UnsubAckReason, buf[i], "UNSUBACK reason code", i)
                  for i in range(pos, end))
    return UnsubAck(pid, codes, props)


_PINGREQ = PingReq()
_PINGRESP = PingResp()


def _dec_pingreq(buf: bytes, flags: int, start: int, end: int, version: int,
                 topics: dict[bytes, str] | None) -> Packet:
    _check_empty("PINGREQ", flags, start, end)
    return _PINGREQ


def _dec_pingresp(buf: bytes, flags: int, start: int, end: int, version: int,
                  topics: dict[bytes, str] | None) -> Packet:
    _check_empty("PINGRESP", flags, start, end)
    return _PINGRESP


def _reason_and_props(buf: bytes, start: int, end: int, name: str, enum: Any,
                      ptype: int) -> tuple[Any, Properties]:
    if end == start:
        return enum(0), NO_PROPERTIES
    reason = _enum(enum, buf[start], f"{name} reason code", start)
    if end - start == 1:
        return reason, NO_PROPERTIES
    props, pos = read_properties(buf, start + 1, end, ptype)
    if pos != end:
        raise _trailing(name, pos, end)
    return reason, props


def _dec_disconnect(buf: bytes, flags: int, start: int, end: int, version: int,
                    topics: dict[bytes, str] | None) -> Packet:
    if version < 5:
        _check_empty("DISCONNECT", flags, start, end)
        return Disconnect()
    if flags:
        raise _bad_flags("DISCONNECT", flags, start, end)
    reason, props = _reason_and_props(buf, start, end, "DISCONNECT", DisconnectReason,
                                      PacketType.DISCONNECT)
    return Disconnect(reason, props)


def _dec_auth(buf: bytes, flags: int, start: int, end: int, version: int,
              topics: dict[bytes, str] | None) -> Packet:
    if version < 5:
        raise MalformedPacket("AUTH exists only in MQTT 5", offset=first_byte_offset(start, end))
    if flags:
        raise _bad_flags("AUTH", flags, start, end)
    reason, props = _reason_and_props(buf, start, end, "AUTH", AuthReason, PacketType.AUTH)
    return Auth(reason, props)


_DECODERS: tuple[Decoder, ...] = (
    _dec_reserved, _dec_connect, _dec_connack, _dec_publish,
    _make_ack_decoder(PubAck, PacketType.PUBACK, PubAckReason, 0),
    _make_ack_decoder(PubRec, PacketType.PUBREC, PubRecReason, 0),
    _make_ack_decoder(PubRel, PacketType.PUBREL, PubRelReason, 2),
    _make_ack_decoder(PubComp, PacketType.PUBCOMP, PubCompReason, 0),
    _dec_subscribe, _dec_suback, _dec_unsubscribe, _dec_unsuback, _dec_pingreq,
    _dec_pingresp, _dec_disconnect, _dec_auth,
)


# The alias property id is read on the PUBLISH hot path by the stream decoder.
TOPIC_ALIAS_ID: Final = int(PropertyId.TOPIC_ALIAS)

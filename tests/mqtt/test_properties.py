"""MQTT 5.0 properties against the specification's table 2-4 (section 2.2.2.2), written out again
here from the specification: every property id, its data type, the packets that may carry it.

For every (property, packet) pair the table allows, a property list holding it decodes and
encodes; for every pair it does not allow, the packet is malformed (0x81) at the property's
identifier ("A Control Packet which contains an Identifier which is not valid for its packet
type ... is a Malformed Packet"); a second copy is a protocol error (0x82) except for User
Property (anywhere) and Subscription Identifier (in PUBLISH).
"""

from __future__ import annotations

from typing import Any

import pytest

from qosinspect.errors import MalformedPacket, ProtocolError
from qosinspect.mqtt import NEED_DATA, PacketType, Properties, PropertyId, decode, encode
from qosinspect.mqtt.properties import (
    NO_PROPERTIES,
    PROPERTY_SPECS,
    WILL_CONTEXT,
    PropertyType,
)
from qosinspect.mqtt.wire import encode_varint, read_properties

# id: (name, data type, packets) -- MQTT 5.0 table 2-4, "Will Properties" written WILL.
SPEC_TABLE: dict[int, tuple[str, str, set[str]]] = {
    0x01: ("Payload Format Indicator", "byte", {"PUBLISH", "WILL"}),
    0x02: ("Message Expiry Interval", "four", {"PUBLISH", "WILL"}),
    0x03: ("Content Type", "utf8", {"PUBLISH", "WILL"}),
    0x08: ("Response Topic", "utf8", {"PUBLISH", "WILL"}),
    0x09: ("Correlation Data", "binary", {"PUBLISH", "WILL"}),
    0x0B: ("Subscription Identifier", "varint", {"PUBLISH", "SUBSCRIBE"}),
    0x11: ("Session Expiry Interval", "four", {"CONNECT", "CONNACK", "DISCONNECT"}),
    0x12: ("Assigned Client Identifier", "utf8", {"CONNACK"}),
    0x13: ("Server Keep Alive", "two", {"CONNACK"}),
    0x15: ("Authentication Method", "utf8", {"CONNECT", "CONNACK", "AUTH"}),
    0x16: ("Authentication Data", "binary", {"CONNECT", "CONNACK", "AUTH"}),
    0x17: ("Request Problem Information", "byte", {"CONNECT"}),
    0x18: ("Will Delay Interval", "four", {"WILL"}),
    0x19: ("Request Response Information", "byte", {"CONNECT"}),
    0x1A: ("Response Information", "utf8", {"CONNACK"}),
    0x1C: ("Server Reference", "utf8", {"CONNACK", "DISCONNECT"}),
    0x1F: ("Reason String", "utf8", {"CONNACK", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
                                     "SUBACK", "UNSUBACK", "DISCONNECT", "AUTH"}),
    0x21: ("Receive Maximum", "two", {"CONNECT", "CONNACK"}),
    0x22: ("Topic Alias Maximum", "two", {"CONNECT", "CONNACK"}),
    0x23: ("Topic Alias", "two", {"PUBLISH"}),
    0x24: ("Maximum QoS", "byte", {"CONNACK"}),
    0x25: ("Retain Available", "byte", {"CONNACK"}),
    0x26: ("User Property", "pair", {"CONNECT", "CONNACK", "PUBLISH", "WILL", "PUBACK", "PUBREC",
                                     "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE",
                                     "UNSUBACK", "DISCONNECT", "AUTH"}),
    0x27: ("Maximum Packet Size", "four", {"CONNECT", "CONNACK"}),
    0x28: ("Wildcard Subscription Available", "byte", {"CONNACK"}),
    0x29: ("Subscription Identifier Available", "byte", {"CONNACK"}),
    0x2A: ("Shared Subscription Available", "byte", {"CONNACK"}),
}
TYPES = {"byte": PropertyType.BYTE, "two": PropertyType.TWO_BYTE,
         "four": PropertyType.FOUR_BYTE, "varint": PropertyType.VARINT,
         "utf8": PropertyType.UTF8, "binary": PropertyType.BINARY,
         "pair": PropertyType.UTF8_PAIR}
# A valid value, its bytes, for each data type.
SAMPLE: dict[str, tuple[Any, bytes]] = {
    "byte": (1, b"\x01"), "two": (1, b"\x00\x01"), "four": (1, b"\x00\x00\x00\x01"),
    "varint": (1, b"\x01"), "utf8": ("x", b"\x00\x01x"), "binary": (b"x", b"\x00\x01x"),
    "pair": (("k", "v"), b"\x00\x01k\x00\x01v"),
}
CONTEXTS = [t.name for t in PacketType if t not in (PacketType.RESERVED, PacketType.PINGREQ,
                                                    PacketType.PINGRESP)] + ["WILL"]


def context_number(name: str) -> int:
    return WILL_CONTEXT if name == "WILL" else int(PacketType[name])


def packet_with_properties(context: str, props: bytes) -> tuple[bytes, int]:
    """A minimal MQTT 5 packet of type ``context`` around the property list ``props`` (without
    its length), and the offset of the list's first property."""
    plist = encode_varint(len(props)) + props
    head: bytes
    tail = b""
    if context == "CONNECT":
        first, head, tail = 0x10, b"\x00\x04MQTT\x05\x02\x00\x3c", b"\x00\x01c"
    elif context == "WILL":
        first, head, tail = 0x10, b"\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01c", b"\x00\x01t\x00\x00"
    elif context == "CONNACK":
        first, head = 0x20, b"\x00\x00"
    elif context == "PUBLISH":
        first, head = 0x30, b"\x00\x01a"
    elif context in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP"):
        first = {"PUBACK": 0x40, "PUBREC": 0x50, "PUBREL": 0x62, "PUBCOMP": 0x70}[context]
        head = b"\x00\x01\x00"
    elif context == "SUBSCRIBE":
        first, head, tail = 0x82, b"\x00\x01", b"\x00\x01a\x00"
    elif context == "SUBACK":
        first, head, tail = 0x90, b"\x00\x01", b"\x00"
    elif context == "UNSUBSCRIBE":
        first, head, tail = 0xA2, b"\x00\x01", b"\x00\x01a"
    elif context == "UNSUBACK":
        first, head, tail = 0xB0, b"\x00\x01", b"\x00"
    else:  # DISCONNECT, AUTH
        first, head = {"DISCONNECT": 0xE0, "AUTH": 0xF0}[context], b"\x00"
    body = head + plist + tail
    header = bytes((first,)) + encode_varint(len(body))
    return header + body, len(header) + len(head) + len(encode_varint(len(props)))


def decoded_properties(packet: Any, context: str) -> Properties:
    if context == "WILL":
        return packet.will.properties  # type: ignore[no-any-return]
    return packet.properties  # type: ignore[no-any-return]


def test_the_table_is_the_specifications() -> None:
    assert set(PROPERTY_SPECS) == set(SPEC_TABLE) == {int(p) for p in PropertyId}
    for pid, (name, dtype, packets) in SPEC_TABLE.items():
        spec = PROPERTY_SPECS[pid]
        assert spec.name == name.lower().replace(" ", "_")
        assert spec.type is TYPES[dtype], name
        assert spec.allowed_in == {context_number(p) for p in packets}, name


def test_only_user_property_and_publish_subscription_identifiers_repeat() -> None:
    for pid, spec in PROPERTY_SPECS.items():
        if pid == PropertyId.USER_PROPERTY:
            assert spec.repeatable_in == spec.allowed_in
        elif pid == PropertyId.SUBSCRIPTION_IDENTIFIER:
            assert spec.repeatable_in == {PacketType.PUBLISH}
        else:
            assert not spec.repeatable_in


ALLOWED = [(pid, c) for pid, (_, _, packets) in SPEC_TABLE.items() for c in sorted(packets)]
FORBIDDEN = [(pid, c) for pid, (_, _, packets) in SPEC_TABLE.items() for c in CONTEXTS
             if c not in packets]


@pytest.mark.parametrize(("pid", "context"), ALLOWED, ids=[f"{p:#04x}-{c}" for p, c in ALLOWED])
def test_allowed_property_decodes_and_encodes(pid: int, context: str) -> None:
    value, raw = SAMPLE[SPEC_TABLE[pid][1]]
    data, _ = packet_with_properties(context, bytes((pid,)) + raw)
    result = decode(data, 5)
    assert result is not NEED_DATA
    packet, size = result  # type: ignore[misc]
    assert size == len(data)
    assert decoded_properties(packet, context).items == ((pid, value),)
    assert encode(packet, 5) == data


@pytest.mark.parametrize(("pid", "context"), FORBIDDEN,
                         ids=[f"{p:#04x}-{c}" for p, c in FORBIDDEN])
def test_property_in_a_packet_that_may_not_carry_it_is_malformed(pid: int, context: str) -> None:
    _, raw = SAMPLE[SPEC_TABLE[pid][1]]
    data, at = packet_with_properties(context, bytes((pid,)) + raw)
    with pytest.raises(MalformedPacket) as info:
        decode(data, 5)
    assert info.value.reason_code == 0x81 and info.value.offset == at


@pytest.mark.parametrize(("pid", "context"), ALLOWED, ids=[f"{p:#04x}-{c}" for p, c in ALLOWED])
def test_property_twice(pid: int, context: str) -> None:
    value, raw = SAMPLE[SPEC_TABLE[pid][1]]
    one = bytes((pid,)) + raw
    data, at = packet_with_properties(context, one + one)
    if pid == 0x26 or (pid == 0x0B and context == "PUBLISH"):
        packet, _ = decode(data, 5)  # type: ignore[misc]
        assert decoded_properties(packet, context).items == ((pid, value), (pid, value))
        assert encode(packet, 5) == data
    else:
        with pytest.raises(ProtocolError) as info:
            decode(data, 5)
        assert info.value.reason_code == 0x82 and info.value.offset == at + len(one)


@pytest.mark.parametrize(("pid", "raw", "error"), [
    # A value other than 0 or 1 is a Protocol Error: 3.1.2.11.7, 3.1.2.11.6, 3.2.2.3.4,
    # 3.2.2.3.5, 3.2.2.3.11, 3.2.2.3.12, 3.2.2.3.13.
    (0x17, b"\x02", ProtocolError), (0x19, b"\x02", ProtocolError),
    (0x24, b"\x02", ProtocolError), (0x25, b"\x02", ProtocolError),
    (0x28, b"\x02", ProtocolError), (0x29, b"\x02", ProtocolError),
    (0x2A, b"\xff", ProtocolError),
    # Zero is a Protocol Error: Receive Maximum, Maximum Packet Size, Topic Alias,
    # Subscription Identifier.
    (0x21, b"\x00\x00", ProtocolError), (0x27, b"\x00\x00\x00\x00", ProtocolError),
    (0x23, b"\x00\x00", ProtocolError), (0x0B, b"\x00", ProtocolError),
    # A value cut off by the end of the property list.
    (0x02, b"\x00\x00", MalformedPacket), (0x13, b"\x00", MalformedPacket),
    (0x03, b"\x00\x05ab", MalformedPacket), (0x26, b"\x00\x01k\x00", MalformedPacket),
    (0x01, b"", MalformedPacket), (0x0B, b"\x80", MalformedPacket),
])
def test_property_values_out_of_range(pid: int, raw: bytes, error: type) -> None:
    context = next(iter(sorted(SPEC_TABLE[pid][2] - {"WILL"})))
    data, at = packet_with_properties(context, bytes((pid,)) + raw)
    with pytest.raises(error) as info:
        decode(data, 5)
    assert info.value.offset >= at  # type: ignore[attr-defined]


def test_payload_format_indicator_keeps_any_value() -> None:
    """Only 0 and 1 mean something, but no rule forbids others (3.3.2.3.2); mosquitto clients
    send them (../shared/captures mqtt5-sub-mosquittoprops has 0x90)."""
    data, _ = packet_with_properties("PUBLISH", b"\x01\x90")
    packet, _ = decode(data, 5)  # type: ignore[misc]
    assert packet.properties.payload_format_indicator == 0x90
    assert encode(packet, 5) == data


def test_unknown_property_identifier_is_malformed() -> None:
    for pid in (0x00, 0x04, 0x0A, 0x2B, 0x7F, 0x80 | 0x01):
        raw = encode_varint(pid) + b"\x00"
        data, at = packet_with_properties("PUBLISH", raw)
        with pytest.raises(MalformedPacket) as info:
            decode(data, 5)
        assert info.value.offset == at


def test_read_properties_reports_positions_in_the_buffer() -> None:
    buf = b"junk" + b"\x03\x23\x00\x07" + b"tail"
    props, pos = read_properties(buf, 4, 8, PacketType.PUBLISH)
    assert props.items == ((0x23, 7),) and pos == 8
    assert read_properties(b"\x00", 0, 1, PacketType.PUBLISH) == (NO_PROPERTIES, 1)


# --- the Properties value --------------------------------------------------------------------

def test_properties_of_and_accessors() -> None:
    props = Properties.of(topic_alias=3, user_property=[("a", "1"), ("a", "2")],
                          subscription_identifier=[4, 5], correlation_data=b"\x01",
                          content_type="text/plain", message_expiry_interval=None)
    assert props.topic_alias == 3
    assert props.content_type == "text/plain" and props.correlation_data == b"\x01"
    assert props.message_expiry_interval is None
    assert props.user_properties == [("a", "1"), ("a", "2")]
    assert props.subscription_identifiers == [4, 5]
    assert props.get_all(PropertyId.SUBSCRIPTION_IDENTIFIER) == [4, 5]
    assert props.without(PropertyId.TOPIC_ALIAS).topic_alias is None
    assert Properties.of(topic_alias=1).without(PropertyId.TOPIC_ALIAS) is NO_PROPERTIES
    assert props.to_dict() == {"topic_alias": 3, "user_property": [["a", "1"], ["a", "2"]],
                               "subscription_identifier": [4, 5], "correlation_data": b"\x01",
                               "content_type": "text/plain"}
    assert bool(props) and not NO_PROPERTIES and Properties.of() is NO_PROPERTIES
    with pytest.raises(TypeError):
        Properties.of(no_such_property=1)


def test_every_property_has_a_typed_accessor() -> None:
    for pid, spec in PROPERTY_SPECS.items():
        if pid in (PropertyId.USER_PROPERTY, PropertyId.SUBSCRIPTION_IDENTIFIER):
            continue
        value = SAMPLE[{v: k for k, v in TYPES.items()}[spec.type]][0]
        assert getattr(Properties(((pid, value),)), spec.name) == value
        assert getattr(NO_PROPERTIES, spec.name) is None


def test_properties_keep_wire_order() -> None:
    """Peers order properties freely; re-sorting would not reproduce their bytes."""
    data, _ = packet_with_properties("CONNACK", b"\x22\x00\x0a\x21\x00\x14")
    packet, _ = decode(data, 5)  # type: ignore[misc]
    assert [pid for pid, _ in packet.properties.items] == [0x22, 0x21]
    assert encode(packet, 5) == data

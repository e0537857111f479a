"""Packet values, enums, the JSON form and the small public helpers of the codec."""

from __future__ import annotations

from typing import Any

import pytest

from qosinspect.errors import (
    MalformedPacket,
    PacketTooLarge,
    ProtocolError,
    TopicFilterInvalid,
    TopicNameInvalid,
    UnsupportedProtocolVersion,
)
from qosinspect.mqtt import (
    NEED_DATA,
    Auth,
    ConnAck,
    Connect,
    Direction,
    Disconnect,
    NeedData,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    ProtocolVersion,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    QoS,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode,
    encode,
    packet_type_of,
)
from qosinspect.mqtt.codec import decode_body, first_byte_offset, parse_fixed_header
from qosinspect.mqtt.framing import anomaly_kind
from qosinspect.mqtt.jsonform import (
    packet_from_dict,
    packet_to_dict,
    properties_from_list,
    properties_to_list,
)

ONE_OF_EACH: list[Any] = [
    Connect("c", 5, will=Will("w", b"bye", 1, True, Properties.of(will_delay_interval=3)),
            username="u", password=b"\x00\xff", properties=Properties.of(receive_maximum=5)),
    ConnAck(True, 0, Properties.of(assigned_client_identifier="auto")),
    Publish("t", b"\x01", 1, True, True, 7, Properties.of(correlation_data=b"\x02")),
    PubAck(1, 0x10), PubRec(2), PubRel(3, 0x92), PubComp(4),
    Subscribe(5, (Subscription("a/+", 1, True, True, 2),), Properties.of(
        subscription_identifier=9)),
    SubAck(5, (1, 0x80)), Unsubscribe(6, ("a/+",)), UnsubAck(6, (0x11,)),
    PingReq(), PingResp(), Disconnect(0x04), Auth(0x18, Properties.of(authentication_method="m")),
]


def test_every_packet_type_has_a_class() -> None:
    assert {packet_type_of(p) for p in ONE_OF_EACH} == set(PacketType) - {PacketType.RESERVED}
    for p in ONE_OF_EACH:
        assert p.packet_type is packet_type_of(p)


def test_equality_is_strict_about_the_type() -> None:
    """PubAck(1) and PubRec(1) hold the same tuple, but they are different packets."""
    assert PubAck(1) != PubRec(1) and PubRel(1) != PubComp(1)
    assert PubAck(1) == PubAck(1) and hash(PubAck(1)) == hash(PubAck(1))
    assert hash(PubAck(1)) != hash(PubRec(1))
    assert PubAck(1) != (1, 0, Properties())
    assert len({PubAck(1), PubRec(1), PubRel(1), PubComp(1), PubAck(1)}) == 4
    assert PingReq() != PingResp()
    assert Subscription("a") == Subscription("a") and Will("t", b"") != ("t", b"", 0, False,
                                                                          Properties())


def test_packets_are_immutable() -> None:
    packet = Publish("t", b"x")
    with pytest.raises(AttributeError):
        packet.topic = "u"  # type: ignore[misc]
    assert packet._replace(topic="u").topic == "u" and packet.topic == "t"


def test_reason_codes_compare_equal_to_ints() -> None:
    packet, _ = decode(b"\x40\x03\x00\x01\x10", 5)  # type: ignore[misc]
    assert packet == PubAck(1, 0x10) and packet.reason_code == 16


def test_enums() -> None:
    assert Direction.C2B.reverse is Direction.B2C and Direction.B2C.reverse is Direction.C2B
    assert Direction("c2b") is Direction.C2B and str(Direction.B2C) == "b2c"
    assert [v.label for v in ProtocolVersion] == ["3.1", "3.1.1", "5.0"]
    assert [int(q) for q in QoS] == [0, 1, 2]


def test_need_data_is_a_falsy_singleton() -> None:
    assert NeedData() is NEED_DATA and not NEED_DATA and repr(NEED_DATA) == "NEED_DATA"


@pytest.mark.parametrize("packet", ONE_OF_EACH, ids=lambda p: type(p).__name__)
def test_json_form_round_trips(packet: Any) -> None:
    form = packet_to_dict(packet)
    assert form["type"] == packet_type_of(packet).name
    assert packet_from_dict(form) == packet
    assert decode(encode(packet, 5), 5)[0] == packet  # type: ignore[index]


def test_json_form_shapes() -> None:
    form = packet_to_dict(ONE_OF_EACH[0])
    assert form["password"] == {"hex": "00ff"}
    assert form["will"]["payload"] == {"hex": "627965"}
    assert form["will"]["properties"] == [["will_delay_interval", 3]]
    assert form["properties"] == [["receive_maximum", 5]]
    assert packet_to_dict(PubAck(1, 0x10)) == {"type": "PUBACK", "packet_id": 1,
                                              "reason_code": 16, "properties": []}
    props = Properties.of(user_property=[("k", "v")], correlation_data=b"\x01")
    assert properties_to_list(props) == [["user_property", ["k", "v"]],
                                         ["correlation_data", {"hex": "01"}]]
    assert properties_from_list(properties_to_list(props)) == props
    assert properties_from_list(None) == Properties()


def test_json_form_accepts_text_and_defaults() -> None:
    assert packet_from_dict({"type": "PUBLISH", "topic": "t", "payload": {"text": "h\u00e9"}}) == (
        Publish("t", "h\u00e9".encode()))
    assert packet_from_dict({"type": "PINGREQ"}) == PingReq()
    assert packet_from_dict({"type": "CONNECT", "client_id": "c", "will": {
        "topic": "w", "payload": {"text": "x"}}}).will == Will("w", b"x")  # type: ignore[union-attr]


@pytest.mark.parametrize("form", [{"type": "NOPE"}, {"type": "PUBACK", "packet_id": 1, "x": 2}])
def test_json_form_rejects_what_is_not_a_packet(form: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        packet_from_dict(form)


def test_parse_fixed_header_and_decode_body() -> None:
    buf = b"junk\x62\x02\x00\x07"
    assert parse_fixed_header(buf, 4, len(buf)) == (0x62, 2, 2)
    assert parse_fixed_header(buf, 4, 5) is None
    assert decode_body(buf, 0x62, 6, 8, 4) == PubRel(7)
    with pytest.raises(MalformedPacket) as info:
        decode_body(b"\x00\x00", 0x40, 0, 2, 4)
    assert info.value.packet_type == 4 and info.value.offset == 0


@pytest.mark.parametrize(("length", "header"), [(0, 2), (127, 2), (128, 3), (16383, 3),
                                                (16384, 4), (2_097_152, 5)])
def test_first_byte_offset(length: int, header: int) -> None:
    assert first_byte_offset(100, 100 + length) == 100 - header


@pytest.mark.parametrize(("exc", "kind"), [
    (MalformedPacket("reserved control packet type 0", packet_type=0), "unassigned_msgtype"),
    (MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]", packet_type=3), "invalid_qos"),
    (PacketTooLarge("big"), "packet_too_large"),
    (MalformedPacket("x"), "malformed"), (ProtocolError("x"), "protocol_error"),
    (TopicNameInvalid("x"), "invalid_topic"), (TopicFilterInvalid("x"), "invalid_topic_filter"),
    (UnsupportedProtocolVersion("x"), "unsupported_version"),
])
def test_anomaly_kinds(exc: Any, kind: str) -> None:
    assert anomaly_kind(exc) == kind

"""The encoder refuses what the decoder would refuse, with LocalProtocolError (h11's "local" error:
the caller asked to send something the protocol forbids), and writes canonical short forms."""

from __future__ import annotations

from typing import Any

import pytest

from qosinspect.errors import LocalProtocolError
from qosinspect.mqtt import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    Properties,
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
    decode,
    encode,
)
from qosinspect.mqtt.properties import NO_PROPERTIES, PropertyId

ALIAS = Properties.of(topic_alias=1)

REFUSED: list[tuple[str, Any, int]] = [
    ("publish-qos3", Publish("a", qos=3, packet_id=1), 4),
    ("publish-qos1-without-packet-id", Publish("a", qos=1), 4),
    ("publish-packet-id-0", Publish("a", qos=1, packet_id=0), 4),
    ("publish-packet-id-65536", Publish("a", qos=2, packet_id=65536), 5),
    ("publish-qos0-with-packet-id", Publish("a", packet_id=3), 4),
    ("publish-dup-at-qos0", Publish("a", dup=True), 4),
    ("publish-wildcard-plus", Publish("a/+"), 4),
    ("publish-wildcard-hash", Publish("#"), 5),
    ("publish-empty-topic-v311", Publish(""), 4),
    ("publish-empty-topic-without-alias-v5", Publish(""), 5),
    ("publish-u0000-topic", Publish("a\x00b"), 4),
    ("publish-lone-surrogate", Publish("\ud800"), 4),
    ("publish-topic-over-65535-bytes", Publish("t" * 65536), 4),
    ("publish-properties-before-v5", Publish("a", properties=ALIAS), 4),
    ("publish-topic-alias-0", Publish("a", properties=Properties(((0x23, 0),))), 5),
    ("publish-session-expiry-not-allowed",
     Publish("a", properties=Properties(((0x11, 1),))), 5),
    ("publish-two-topic-aliases", Publish("a", properties=Properties(((0x23, 1), (0x23, 2)))),
     5),
    ("publish-property-wrong-type", Publish("a", properties=Properties(((0x03, 5),))), 5),
    ("publish-property-out-of-range",
     Publish("a", properties=Properties(((0x02, 1 << 32),))), 5),
    ("publish-unknown-property", Publish("a", properties=Properties(((0x7F, 1),))), 5),
    ("publish-user-property-not-a-pair", Publish("a", properties=Properties(((0x26, "k"),))), 5),
    ("connect-level-6", Connect("c", 6), 4),
    ("connect-password-without-user-name-v311", Connect("c", 4, password=b"pw"), 4),
    ("connect-will-qos3", Connect("c", 4, will=Will("w", b"", 3)), 4),
    ("connect-will-topic-wildcard", Connect("c", 4, will=Will("w/#", b"")), 4),
    ("connect-will-properties-before-v5",
     Connect("c", 4, will=Will("w", b"", properties=Properties.of(content_type="x"))), 4),
    ("connect-will-property-not-allowed",
     Connect("c", 5, will=Will("w", b"", properties=Properties.of(topic_alias=1))), 5),
    ("connect-keep-alive-65536", Connect("c", 4, keep_alive=65536), 4),
    ("connect-receive-maximum-0", Connect("c", 5, properties=Properties(((0x21, 0),))), 5),
    ("connect-request-problem-information-2",
     Connect("c", 5, properties=Properties(((0x17, 2),))), 5),
    ("connect-client-id-u0000", Connect("a\x00", 4), 4),
    ("connect-will-payload-over-65535", Connect("c", 4, will=Will("w", b"x" * 65536)), 4),
    ("connack-v5-code-before-v5", ConnAck(False, 0x87), 4),
    ("connack-v311-code-6", ConnAck(False, 6), 4),
    ("connack-v5-code-01", ConnAck(False, 1), 5),
    ("connack-session-present-with-refusal", ConnAck(True, 5), 4),
    ("connack-session-present-in-3.1", ConnAck(True, 0), 3),
    ("puback-reason-before-v5", PubAck(1, 0x10), 4),
    ("puback-properties-before-v5", PubAck(1, properties=Properties.of(reason_string="x")), 4),
    ("puback-packet-id-0", PubAck(0), 5),
    ("pubrec-reason-not-for-pubrec", PubRec(1, 0x92), 5),
    ("pubrel-reason-not-for-pubrel", PubRel(1, 0x10), 5),
    ("pubcomp-topic-alias", PubComp(1, properties=ALIAS), 5),
    ("subscribe-no-subscriptions", Subscribe(1, ()), 4),
    ("subscribe-bad-filter", Subscribe(1, (Subscription("a/#/b"),)), 4),
    ("subscribe-empty-filter", Subscribe(1, (Subscription(""),)), 4),
    ("subscribe-bad-shared-filter", Subscribe(1, (Subscription("$share/+/x"),)), 5),
    ("subscribe-qos3", Subscribe(1, (Subscription("a", 3),)), 5),
    ("subscribe-retain-handling-3", Subscribe(1, (Subscription("a", retain_handling=3),)), 5),
    ("subscribe-options-before-v5", Subscribe(1, (Subscription("a", no_local=True),)), 4),
    ("subscribe-no-local-on-shared", Subscribe(1, (Subscription("$share/g/a", no_local=True),)),
     5),
    ("subscribe-packet-id-0", Subscribe(0, (Subscription("a"),)), 4),
    ("subscribe-two-subscription-identifiers",
     Subscribe(1, (Subscription("a"),), Properties(((0x0B, 1), (0x0B, 2)))), 5),
    ("suback-no-codes", SubAck(1, ()), 4),
    ("suback-v5-code-before-v5", SubAck(1, (0x8F,)), 4),
    ("suback-undefined-code", SubAck(1, (0x03,)), 5),
    ("unsubscribe-no-filters", Unsubscribe(1, ()), 4),
    ("unsubscribe-bad-filter", Unsubscribe(1, ("a+",)), 5),
    ("unsuback-codes-before-v5", UnsubAck(1, (0,)), 4),
    ("unsuback-v5-without-codes", UnsubAck(1), 5),
    ("unsuback-undefined-code", UnsubAck(1, (0x10,)), 5),
    ("disconnect-reason-before-v5", Disconnect(0x04), 4),
    ("disconnect-undefined-reason", Disconnect(0x01), 5),
    ("auth-before-v5", Auth(), 4),
    ("auth-undefined-reason", Auth(0x01), 5),
    ("protocol-level-2", PingReq(), 2),
]


@pytest.mark.parametrize(("packet", "version"), [(p, v) for _, p, v in REFUSED],
                         ids=[name for name, _, _ in REFUSED])
def test_encoder_refuses(packet: Any, version: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode(packet, version)


def test_not_a_packet_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode(("PUBLISH", "a"), 4)  # type: ignore[arg-type]


@pytest.mark.parametrize(("packet", "version", "wire"), [
    # MQTT 5 short forms [3.4.2.1]: Success and no properties -> remaining length 2 ...
    (PubAck(7), 5, "40020007"),
    (PubRec(7), 5, "50020007"),
    (PubRel(7), 5, "62020007"),
    (PubComp(7), 5, "70020007"),
    # ... a reason code and no properties -> 3 ...
    (PubAck(7, 0x10), 5, "4003000710"),
    (PubRel(7, 0x92), 5, "6203000792"),
    # ... properties -> the property length follows the reason code, even for Success.
    (PubAck(7, 0, Properties.of(reason_string="r")), 5, "4008000700" "04" "1f000172"),
    (Disconnect(), 5, "e000"),
    (Disconnect(0x04), 5, "e00104"),
    (Disconnect(0, Properties.of(session_expiry_interval=0)), 5, "e0070005" "1100000000"),
    (Auth(), 5, "f000"),
    (Auth(0x18), 5, "f0021800"),
    (UnsubAck(2), 4, "b0020002"),
    (UnsubAck(2, (0x11,)), 5, "b00400020011"),
])
def test_canonical_short_forms(packet: Any, version: int, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode(packet, version) == data
    assert decode(data, version) == (packet, len(data))


def test_connect_uses_its_own_protocol_level() -> None:
    for level, name in ((3, b"\x00\x06MQIsdp\x03"), (4, b"\x00\x04MQTT\x04"),
                        (5, b"\x00\x04MQTT\x05")):
        for version in (3, 4, 5):
            data = encode(Connect("c", level), version)
            assert data[2:2 + len(name)] == name
            assert decode(data, version)[0] == Connect("c", level)  # type: ignore[index]


def test_empty_topic_with_topic_alias_is_encoded_in_v5() -> None:
    data = encode(Publish("", b"x", properties=ALIAS), 5)
    assert data == bytes.fromhex("3007" "0000" "03230001" "78")
    assert NO_PROPERTIES.topic_alias is None and ALIAS.get_all(PropertyId.TOPIC_ALIAS) == [1]

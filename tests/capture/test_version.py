"""The MQTT version of a stream whose CONNECT was not captured: evidence vectors."""

from __future__ import annotations

from typing import Any

import pytest

from qosinspect.capture import iter_events
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.version import connect_level, find_version_evidence
from qosinspect.events import Anomaly, MqttPacketEvent
from qosinspect.mqtt import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
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
    encode,
)
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render


@pytest.mark.parametrize("packet, why", [
    (PubAck(1, 0x10), "PUBACK with remaining length 3"),          # 5.0 3.4.2.1: reason code
    (PubRec(1, 0x80), "PUBREC with remaining length 3"),
    (PubRel(1, 0x92), "PUBREL with remaining length 3"),
    (PubComp(1, 0x92), "PUBCOMP with remaining length 3"),
    (ConnAck(False, 0, Properties(((0x22, 10),))), "CONNACK with remaining length"),
    (Disconnect(0x04), "DISCONNECT with remaining length 1"),       # 3.1.1: length 0
    (Auth(0x18), "AUTH packet"),
    (UnsubAck(1, (0x11,)), "UNSUBACK with remaining length"),
    (Subscribe(1, (Subscription("a/b", 1),)), "SUBSCRIBE decodes only as MQTT 5.0"),
    (Unsubscribe(1, ("a/b",)), "UNSUBSCRIBE decodes only as MQTT 5.0"),
])
def test_mqtt5_only_shapes(packet: object, why: str) -> None:
    ev = find_version_evidence(encode(packet, 5))  # type: ignore[arg-type]
    assert ev is not None and ev.version == 5 and why in ev.reason


@pytest.mark.parametrize("packet", [
    Subscribe(1, (Subscription("a/b", 1),)), Unsubscribe(1, ("a/b",)),
])
def test_mqtt311_only_shapes(packet: object) -> None:
    ev = find_version_evidence(encode(packet, 4))  # type: ignore[arg-type]
    assert ev is not None and ev.version == 4 and "3.1.1" in ev.reason


@pytest.mark.parametrize("packet", [
    # a payload starting with 0x00 reads in MQTT 5 as an empty property list: both decode
    PingReq(), PubAck(7), Publish("t", b"\x00payload", 1, packet_id=3), ConnAck(),
    SubAck(1, (0, 1)), Disconnect(),
])
def test_packets_that_do_not_tell(packet: object) -> None:
    assert find_version_evidence(encode(packet, 4)) is None  # type: ignore[arg-type]


def test_evidence_further_in_the_buffer_and_limits() -> None:
    data = encode(PingReq()) * 5 + encode(PubAck(1, 0x10), 5)
    ev = find_version_evidence(data)
    assert ev is not None and ev.packets_scanned == 6
    assert find_version_evidence(data, max_packets=5) is None
    assert find_version_evidence(data[:-1]) is None  # the telling packet is incomplete
    assert find_version_evidence(encode(Connect("x"), 4) + data) is None  # CONNECT decides
    assert find_version_evidence(b"\x30\xff\xff\xff\xff") is None  # invalid length: no claim


@pytest.mark.parametrize("packet", [Publish("t", b"payload", 1, packet_id=3), SubAck(1, (0,))])
def test_shapes_mqtt5_cannot_read(packet: object) -> None:
    # PUBLISH: 'p' (112) would be the property length; SUBACK: no reason code after the
    # (empty) property list [MQTT-3.9.3-1]
    ev = find_version_evidence(encode(packet, 4))  # type: ignore[arg-type]
    assert ev is not None and ev.version == 4


def test_a_publish_whose_property_list_is_invalid_is_not_mqtt5() -> None:
    # MQTT 5 would read 0x09 as the property length, longer than the rest: only 3.1.1 works
    raw = encode(Publish("t", b"\x09abc", 1, packet_id=2), 4)
    ev = find_version_evidence(raw)
    assert ev is not None and ev.version == 4 and "PUBLISH" in ev.reason


@pytest.mark.parametrize("version", [3, 4, 5])
def test_connect_level_read_from_the_header(version: int) -> None:
    raw = encode(Connect("cid", protocol_version=version), version)
    assert connect_level(raw) == version
    assert connect_level(raw[:9]) == (version if version != 3 else None)
    assert connect_level(raw[:2]) is None
    assert connect_level(b"\x10\x04\x00\x04MQXX\x05") is None
    assert connect_level(b"\x20\x02\x00\x00") is None
    assert connect_level(b"\x10\xff\xff\xff\xff\xff") is None


# -- in a capture: cues anywhere in the connection, in both directions ----------------------------

def _mid_stream(*steps: tuple[str, bytes]) -> list[Any]:
    conv = TcpConversation(handshake=False)
    for d, raw in steps:
        conv.send(d, raw)
    data = pcap_bytes(render(conv.segments), nanos=True)
    return list(iter_events(CaptureFile.from_bytes(data)))


def _pings(n: int, version: int) -> list[tuple[str, bytes]]:
    """Packets that do not tell the version: the start-of-connection scan runs out on them."""
    return [step for _ in range(n) for step in (("c2b", encode(PingReq(), version)),
                                                ("b2c", encode(PingResp(), version)))]


PROPS = Properties(((0x1F, "x" * 40),))


@pytest.mark.parametrize("late", [
    pytest.param(("b2c", PubAck(1, 0x10, PROPS), "PUBACK with remaining length 47", "broker"),
                 id="broker-ack"),
    pytest.param(("c2b", Subscribe(2, (Subscription("a/b", 1, no_local=True),)),
                  "SUBSCRIBE decodes only as MQTT 5.0", "client"), id="client-subscribe"),
    pytest.param(("b2c", ConnAck(False, 0, PROPS), "CONNACK with remaining length", "broker"),
                 id="broker-connack"),
])
def test_a_late_cue_switches_the_version_and_decodes_the_packet(late: tuple[Any, ...]) -> None:
    """Issue 11 §3: a cue after the packets scanned at the start (300 PINGREQ/PINGRESP here)
    was a ``malformed`` anomaly and the stream stayed 3.1.1."""
    d, packet, cue, who = late
    evs = _mid_stream(*_pings(300, 5), (d, encode(packet, 5)),
                      ("c2b", encode(Publish("t", b"\x00x", 1, packet_id=9), 5)),
                      ("b2c", encode(PubAck(9, 0x10), 5)))
    assert not [e for e in evs if type(e) is Anomaly and e.kind == "malformed"]
    notes = [e for e in evs if type(e) is Anomaly and e.kind == "version_inferred"]
    assert len(notes) == 1 and cue in notes[0].detail and f"by the {who}" in notes[0].detail
    assert f"frame {notes[0].frame}" in notes[0].detail
    pk = [e for e in evs if type(e) is MqttPacketEvent]
    telling = next(e for e in pk if type(e.packet) is type(packet))
    assert telling.frame == notes[0].frame and telling.version == 5
    assert telling.packet == packet
    assert all(e.version == 5 and not e.version_assumed for e in pk if e.frame >= telling.frame)


def test_a_late_cue_for_3_1_1_when_5_was_assumed() -> None:
    """The other way: decoding as MQTT 5 (assumed), a PUBLISH whose property length runs
    past the packet is 3.1.1."""
    conv = TcpConversation(handshake=False)
    for step in _pings(300, 4):
        conv.send(*step)
    conv.send("c2b", encode(Publish("t", b"\x09abc", 1, packet_id=2), 4))
    data = pcap_bytes(render(conv.segments), nanos=True)
    evs = list(iter_events(CaptureFile.from_bytes(data), mqtt_version=5))
    notes = [e for e in evs if type(e) is Anomaly and e.kind == "version_inferred"]
    assert len(notes) == 1 and "MQTT 3.1.1 inferred" in notes[0].detail
    pub = [e for e in evs if type(e) is MqttPacketEvent and type(e.packet) is Publish]
    assert len(pub) == 1 and pub[0].version == 4 and pub[0].packet.payload == b"\x09abc"


def test_a_connect_decides_and_late_cues_do_not_override_it() -> None:
    conv = TcpConversation()
    conv.send("c2b", encode(Connect("x"), 4))
    conv.send("b2c", encode(PubAck(1, 0x10, PROPS), 5))  # a broken broker: malformed in 3.1.1
    data = pcap_bytes(render(conv.segments), nanos=True)
    evs = list(iter_events(CaptureFile.from_bytes(data)))
    assert [e.kind for e in evs if type(e) is Anomaly] == ["malformed"]

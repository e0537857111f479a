"""The public Suricata captures in ../shared/captures, decoded by qosinspect, against Suricata's
own expected output for them (../shared/captures/oracles/suricata-verify/<test>/test.yaml).

The TCP payloads come from :class:`qosinspect.capture.pipeline.CapturePipeline` (in-order
StreamData per connection and direction) and go through a lenient ConnectionDecoder, as a capture
decoder would feed them.

How an oracle is read. Each ``filter`` says how many EVE records (``count``) match all of its
``match`` keys. For ``event_type: mqtt`` the keys are ``mqtt.<message>.<field>``: every packet
of that message type we decoded is compared field by field, and exactly ``count`` of them must
match. Suricata logs a transaction per record, so one record can hold a CONNECT and its
CONNACK; such a filter is checked message by message (each must match at least one packet).
``anomaly`` events are compared with our anomalies where they are codec matters.

Where Suricata and the MQTT specification part ways, we follow the specification and say so:

* Suricata prints the fixed-header flags 0b0010 of PUBREL, SUBSCRIBE and UNSUBSCRIBE as
  ``qos: 1``; those packets have no QoS [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]. We check
  the oracle's value against the flag bits the packet type carries, not against a QoS field.
* Suricata reads the MQTT 5 DISCONNECT ``e0 01 04`` as reason code 0; its one byte of
  remaining length *is* the reason code, 0x04 Disconnect with Will Message: "If the Remaining
  Length is less than 1 the value of 0x00 (Normal disconnection) is used" (3.14.2.1), and it is
  1 here. tshark reads 4 as well. See SURICATA_DIFFERS.
* ``unintroduced_message`` (a message before the CONNECT/CONNACK exchange) is a session matter,
  not a codec one; we check the facts it rests on (no CONNECT seen; a PUBLISH before any CONNACK).
* ``alert`` records come from Suricata rule files the oracle folder does not ship, ``frame``
  records from Suricata's frame API with a configured max-msg-length; neither is about decoded
  fields, and both are left out (counted in ``SKIPPED``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from qosinspect.capture.pipeline import CapturePipeline
from qosinspect.capture.records import StreamData
from qosinspect.mqtt import (
    ConnAck,
    Connect,
    ConnectionDecoder,
    Direction,
    Disconnect,
    FramingAnomaly,
    Packet,
    PacketType,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    packet_type_of,
)
from qosinspect.mqtt.properties import PROPERTY_SPECS
from qosinspect.testing.tools import shared_captures

SHARED = shared_captures()
SOURCES: dict[str, Any] = json.loads((SHARED / "SOURCES.json").read_text())
ORACLES = SHARED / "oracles" / "suricata-verify"
#: (pcap, message, field) -> (Suricata's value, ours, why ours is right).
SURICATA_DIFFERS: dict[tuple[str, str, str], tuple[Any, Any, str]] = {
    (pcap, "disconnect", "reason_code"): (
        0, 4, "e0 01 04: remaining length 1, so the byte is the reason code (MQTT 5.0 "
        "3.14.2.1); tshark agrees")
    for pcap in ("suricata-verify__mqtt5-sub-userpass.pcap",
                 "suricata-verify__mqtt5-unsub-qos1.pcap")
}
#: Suricata's anomaly events that are codec matters -> our FramingAnomaly kinds.
ANOMALY_KINDS = {"invalid_qos_level": "invalid_qos", "unassigned_msg_type": "unassigned_msgtype",
                 "malformed_traffic": "malformed"}


@dataclass
class Seen:
    frame: int
    direction: Direction
    item: Packet | FramingAnomaly
    connect_seen: bool


def decode_capture(path: Path) -> list[Seen]:
    out: list[Seen] = []
    conns: dict[int, ConnectionDecoder] = {}
    for record in CapturePipeline(path):
        if type(record) is not StreamData:
            continue
        conn = conns.setdefault(id(record.flow), ConnectionDecoder())
        for item in conn.feed(record.direction, record.data):
            out.append(Seen(record.frame, record.direction, item, conn.version_known))
    return out


def oracle_for(pcap: str) -> Path | None:
    test = SOURCES[pcap]["path"].split("/")[1]  # tests/<test>/input.pcap
    path = ORACLES / test / "test.yaml"
    return path if path.exists() else None


PCAPS = sorted(p for p in SOURCES if oracle_for(p) is not None)


def fixed_header_bits(packet: Packet) -> dict[str, Any]:
    """What Suricata shows as qos/dup/retain: the fixed-header bits, whatever the type."""
    if isinstance(packet, Publish):
        return {"qos": packet.qos, "dup": packet.dup, "retain": packet.retain}
    flags = 0b0010 if packet_type_of(packet) in (
        PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE) else 0
    return {"qos": (flags >> 1) & 3, "dup": bool(flags & 8), "retain": bool(flags & 1)}


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def suricata_fields(packet: Packet) -> dict[str, Any]:
    """Our packet under Suricata's EVE names (``mqtt.<message>.`` left off)."""
    fields = fixed_header_bits(packet)
    props = getattr(packet, "properties", None)
    if props is not None:
        for pid, value in props.items:
            name = PROPERTY_SPECS[pid].name
            fields[f"properties.{name}"] = _text(value) if isinstance(value, bytes) else value
    if isinstance(packet, Connect):
        will = packet.will
        fields.update({
            "protocol_string": "MQIsdp" if packet.protocol_version == 3 else "MQTT",
            "protocol_version": packet.protocol_version, "client_id": packet.client_id,
            "username": packet.username, "password": _text(packet.password),
            "flags.username": packet.username is not None,
            "flags.password": packet.password is not None, "flags.will": will is not None,
            "flags.will_retain": bool(will and will.retain),
            "flags.clean_session": packet.clean_start})
    elif isinstance(packet, ConnAck):
        fields.update(session_present=packet.session_present, return_code=packet.reason_code)
    elif isinstance(packet, Publish):
        fields.update(topic=packet.topic, message=_text(packet.payload),
                      message_id=packet.packet_id)
    elif isinstance(packet, Subscribe):
        fields.update(message_id=packet.packet_id,
                      topics=[{"topic": s.topic_filter, "qos": s.qos}
                              for s in packet.subscriptions])
    elif isinstance(packet, Unsubscribe):
        fields.update(message_id=packet.packet_id, topics=list(packet.topic_filters))
    elif isinstance(packet, SubAck):
        fields.update(message_id=packet.packet_id, qos_granted=list(packet.reason_codes))
    elif isinstance(packet, UnsubAck):
        fields.update(message_id=packet.packet_id, reason_codes=list(packet.reason_codes))
    elif isinstance(packet, Disconnect):
        fields["reason_code"] = packet.reason_code
    elif hasattr(packet, "packet_id"):  # PUBACK, PUBREC, PUBREL, PUBCOMP
        fields.update(message_id=packet.packet_id, reason_code=packet.reason_code)
    return fields


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, str) and not isinstance(theirs, str):
        return ours == str(theirs)  # YAML reads an unquoted 1234 as a number
    return bool(ours == theirs)


def matches(packet: Packet, wanted: dict[str, Any]) -> bool:
    fields = suricata_fields(packet)
    return all(key in fields and _same(fields[key], value) for key, value in wanted.items())


SKIPPED: list[str] = []


def check_filter(pcap: str, decoded: list[Seen], match: dict[str, Any], count: int) -> bool:
    """Assert one oracle filter; False when it is not a codec matter (skipped)."""
    event = match.get("event_type")
    if event == "mqtt":
        groups: dict[str, dict[str, Any]] = {}
        for key, value in match.items():
            if key == "has-key":
                groups.setdefault(str(value).split(".")[1], {})
            elif key.startswith("mqtt."):
                _, message, field = key.split(".", 2)
                groups.setdefault(message, {})[field] = value
        for message, wanted in groups.items():
            for field in list(wanted):
                differs = SURICATA_DIFFERS.get((pcap, message, field))
                if differs is not None:
                    assert wanted[field] == differs[0], "the oracle changed: revisit"
                    wanted[field] = differs[1]
            of_type = [s.item for s in decoded if not isinstance(s.item, FramingAnomaly)
                       and packet_type_of(s.item).name.lower() == message]
            hits = [p for p in of_type if matches(p, wanted)]
            detail = f"{message} {wanted}: ours {[suricata_fields(p) for p in of_type]}"
            if len(groups) == 1:
                assert len(hits) == count, detail
            else:  # one Suricata transaction holds several messages
                assert (len(hits) >= 1) == (count >= 1), detail
        return True
    if event == "anomaly":
        name = match.get("anomaly.event")
        anomalies = [s for s in decoded if isinstance(s.item, FramingAnomaly)]
        if name in ANOMALY_KINDS:
            assert len([s for s in anomalies if s.item.kind == ANOMALY_KINDS[name]]) == count
            return True
        if name == "unintroduced_message":
            # The facts behind it: traffic with no CONNECT seen, or a PUBLISH sent before the
            # broker's CONNACK.
            before = [s for s in decoded if not s.connect_seen and not isinstance(
                s.item, FramingAnomaly | Connect)]
            first_connack = min((s.frame for s in decoded if isinstance(s.item, ConnAck)),
                                default=None)
            early = [s for s in decoded if isinstance(s.item, Publish)
                     and (first_connack is None or s.frame < first_connack)]
            assert len(before) + len(early) == count
            return True
    SKIPPED.append(f"{event or 'flow'}: {sorted(match)}")
    return False


@pytest.mark.parametrize("pcap", PCAPS)
def test_capture_agrees_with_suricata(pcap: str) -> None:
    decoded = decode_capture(SHARED / pcap)
    assert decoded, "nothing decoded"
    oracle_path = oracle_for(pcap)
    assert oracle_path is not None
    oracle = yaml.safe_load(oracle_path.read_text())
    checked = 0
    for check in oracle["checks"]:
        spec = check["filter"]
        checked += check_filter(pcap, decoded, spec["match"], spec["count"])
    mqtt_filters = [c for c in oracle["checks"]
                    if c["filter"]["match"].get("event_type") in ("mqtt", "anomaly")]
    assert checked == len(mqtt_filters)


def test_the_oracles_were_read() -> None:
    """Most shared captures have an oracle, and most of their filters were checked."""
    assert len(PCAPS) >= 20
    total = sum(
        1 for pcap in PCAPS
        for c in yaml.safe_load(oracle_for(pcap).read_text())["checks"]  # type: ignore[union-attr]
        if c["filter"]["match"].get("event_type") == "mqtt")
    assert total >= 80


def test_pubrel_qos_quirk_is_the_fixed_header_not_a_qos() -> None:
    """Suricata's ``pubrel.qos: 1`` is the 0b0010 in the fixed header; the PUBREL itself has
    no QoS field and our packet none."""
    decoded = decode_capture(SHARED / "suricata-verify__mqtt311-pub-qos2.pcap")
    (pubrel,) = [s.item for s in decoded if packet_type_of(s.item) is PacketType.PUBREL]  # type: ignore[arg-type]
    assert not hasattr(pubrel, "qos")
    assert fixed_header_bits(pubrel) == {"qos": 1, "dup": False, "retain": False}  # type: ignore[arg-type]


def test_refused_connection_then_traffic() -> None:
    """mqtt5-pub-jpeg-connack134: the CONNACK refuses (0x86 bad user name or password), and the
    client publishes its 36 KB JPEG anyway, split over two TCP segments."""
    decoded = decode_capture(SHARED / "suricata-verify__mqtt5-pub-jpeg-connack134.pcap")
    items = [s.item for s in decoded]
    connack = next(i for i in items if isinstance(i, ConnAck))
    publish = next(i for i in items if isinstance(i, Publish))
    assert connack.reason_code == 0x86
    assert publish.topic == "topicX" and publish.payload[:3] == b"\xff\xd8\xff"  # JPEG SOI
    assert len(publish.payload) > 30_000

"""Agreement with Wireshark: every capture we ship and every shared one decodes to the packets
``tshark -r F -Y mqtt -T json --no-duplicate-keys`` lists, field for field.

Compared per MQTT packet, in order: (frame, src, dst, type, qos, dup, retain, packet id, topic,
payload length); topic is the topic of a PUBLISH and the filters of a SUBSCRIBE/UNSUBSCRIBE.
tshark's JSON is read here directly (not through qosinspect's tshark engine), so the oracle is
independent of the code under test.

Named exceptions, each explained where it is declared:

* ``MALFORMED``: packets tshark lists with whatever fields it could read but the codec refuses
  (a PUBLISH with QoS 3 [MQTT-3.3.1-4], reserved packet type 0, a CONNECT whose property length
  runs past the packet). qosinspect reports an ``Anomaly`` with the packet type instead; these
  are compared on (frame, src, dst, type) only, and the exact set is asserted.
* ``TLS``: qosinspect does not decrypt; it must report every connection of a TLS capture as
  ``encrypted`` and decode nothing. The packets inside are checked through qosinspect's tshark
  engine with the key log against tshark's own JSON (``-d tls.port==N,mqtt -o
  tls.keylog_file:...``), the same tuple.
* ``WEBSOCKET``: tshark 4.0 passes no WebSocket payload to its MQTT dissector (its ``ws.protocol``
  table has no ``mqtt`` entry; later versions add it), so ``-Y mqtt`` finds nothing there. The
  cross-check for that capture uses tshark's own TCP reassembly and WebSocket unmasking
  (``data.data`` of each WebSocket frame), cuts MQTT packets from those bytes with qosinspect's
  codec, and compares the same tuple.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qosinspect.drivers import iter_capture_events as iter_events
from qosinspect.events import Anomaly, ConnectionClosed, ConnectionOpened, MqttPacketEvent
from qosinspect.mqtt import (
    ConnectionDecoder,
    FramingAnomaly,
    Packet,
    PacketType,
    Publish,
    Subscribe,
    Unsubscribe,
)
from qosinspect.mqtt.enums import Direction
from qosinspect.testing.tools import (
    COMMUNITY_PORTS,
    PROJECT_ROOT,
    SHARED_CAPTURES,
    require_tool,
)

CAPTURES = PROJECT_ROOT / "captures"
INFO = {c["file"]: c for c in json.loads((CAPTURES / "captures.json").read_text())}
#: ../shared/captures/community: small real captures from course and project repositories
#: (mid-stream, several packets per segment); MQTT on 1337 in the two alivcor ones.
COMMUNITY = sorted((SHARED_CAPTURES / "community").glob("*.pcap"))
ALL = sorted(SHARED_CAPTURES.glob("*.pcap")) + sorted(CAPTURES.glob("*.pcap")) + COMMUNITY

#: (capture, frame, anomaly kind) for every packet the codec refuses and tshark lists anyway.
MALFORMED = {
    ("suricata-verify__mqtt-events-invalid-qos.pcap", 8, "invalid_qos"),
    ("suricata-verify__mqtt-events-unassigned-msgtype.pcap", 8, "unassigned_msgtype"),
    ("suricata-verify__mqtt5-excessiveproplen.pcap", 4, "malformed"),
}
#: MQTT packets tshark must find in a WebSocket capture (others: as many as we find).
WS_PACKETS = {"mosquitto-websocket.pcap": 41}
#: Captures whose MQTT tshark 4.0 cannot see (see the module docstring).
WEBSOCKET = {name for name, c in INFO.items() if c.get("websocket")}
#: MQTT over TLS, with the key log next to the capture.
TLS = {name for name, c in INFO.items() if c.get("tls")}

Row = tuple[Any, ...]


def _ports(path: Path) -> list[int]:
    if path.name in COMMUNITY_PORTS:
        return list(COMMUNITY_PORTS[path.name])
    return [int(p) for p in INFO.get(path.name, {}).get("ports", [1883])]


def _tshark(path: Path, display_filter: str = "mqtt") -> list[dict[str, Any]]:
    cmd = [require_tool("tshark"), "-n", "-r", str(path), "-T", "json", "--no-duplicate-keys",
           "-Y", display_filter]
    for port in _ports(path):
        if path.name in TLS:
            keylog = CAPTURES / INFO[path.name]["keylog"]
            cmd += ["-d", f"tls.port=={port},mqtt", "-o", f"tls.keylog_file:{keylog}"]
        elif port != 1883:
            cmd += ["-d", f"tcp.port=={port},{'http' if path.name in WEBSOCKET else 'mqtt'}"]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return [p["_source"]["layers"] for p in json.loads(out or b"[]")]


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v)) if isinstance(v, dict) else out.__setitem__(k, v)
    return out


def _many(v: Any) -> list[Any]:
    return [] if v is None else v if isinstance(v, list) else [v]


def _ends(layers: dict[str, Any]) -> tuple[str, str]:
    ip = _many(layers.get("ip") or layers.get("ipv6"))[-1]
    tcp = _many(layers["tcp"])[-1]

    def fmt(host: str, port: str) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    src = ip.get("ip.src") or ip.get("ipv6.src")
    dst = ip.get("ip.dst") or ip.get("ipv6.dst")
    return fmt(src, tcp["tcp.srcport"]), fmt(dst, tcp["tcp.dstport"])


def tshark_rows(path: Path) -> list[Row]:
    """The tuple of every MQTT packet tshark dissects, in frame and wire order."""
    rows: list[Row] = []
    for layers in _tshark(path):
        frame = int(layers["frame"]["frame.number"])
        src, dst = _ends(layers)
        for pdu in _many(layers.get("mqtt")):
            m = _flat(pdu)
            flags = int(m["mqtt.hdrflags"], 16)
            ptype = flags >> 4
            name = PacketType(ptype).name
            pid = int(m["mqtt.msgid"]) if "mqtt.msgid" in m else None
            topics = tuple(str(t) for t in _many(m.get("mqtt.topic")))
            if ptype == 3:
                qos = (flags >> 1) & 3
                msg = str(m.get("mqtt.msg") or "")
                rows.append((frame, src, dst, name, qos, bool(flags & 8), bool(flags & 1),
                             pid if qos else None, topics[0] if topics else "",
                             len(msg.replace(":", "")) // 2))
            else:
                rows.append((frame, src, dst, name, None, None, None, pid,
                             topics if ptype in (8, 10) else None, None))
    return rows


def _row(frame: int, src: str, dst: str, p: Packet) -> Row:
    name = p.packet_type.name
    if type(p) is Publish:
        return (frame, src, dst, name, p.qos, p.dup, p.retain, p.packet_id, p.topic,
                len(p.payload))
    topics: tuple[str, ...] | None = None
    if type(p) is Subscribe:
        topics = tuple(s.topic_filter for s in p.subscriptions)
    elif type(p) is Unsubscribe:
        topics = p.topic_filters
    return (frame, src, dst, name, None, None, None, getattr(p, "packet_id", None), topics,
            None)


def native_rows(path: Path, **options: Any) -> tuple[list[Row], set[tuple[str, int, str]]]:
    """Our tuples (refused packets as (frame, src, dst, type) + 'ANOMALY' markers) and the set of
    (capture, frame, kind) of those refused packets."""
    rows: list[Row] = []
    refused: set[tuple[str, int, str]] = set()
    for ev in iter_events(path, ports=_ports(path), **options):
        if type(ev) is MqttPacketEvent:
            c2b = ev.direction is not Direction.B2C
            src, dst = ((ev.conn.client, ev.conn.broker) if c2b
                        else (ev.conn.broker, ev.conn.client))
            rows.append(_row(ev.frame, str(src), str(dst), ev.packet))
        elif type(ev) is Anomaly and ev.packet_type is not None and ev.conn is not None:
            c2b = ev.direction is not Direction.B2C
            src, dst = ((ev.conn.client, ev.conn.broker) if c2b
                        else (ev.conn.broker, ev.conn.client))
            rows.append((ev.frame, str(src), str(dst), PacketType(ev.packet_type).name,
                         "ANOMALY"))
            refused.add((path.name, ev.frame, ev.kind))
    return rows, refused


def test_every_capture_is_covered() -> None:
    assert len(ALL) >= 30, "shared captures or project captures missing"
    assert len(COMMUNITY) == 9, "../shared/captures/community is missing or changed"
    assert {p.name for p in CAPTURES.glob("*.pcap")} == set(INFO)


@pytest.mark.parametrize("path", [p for p in ALL if p.name not in WEBSOCKET | TLS],
                         ids=lambda p: p.name)
def test_same_packets_as_tshark(path: Path) -> None:
    theirs = tshark_rows(path)
    ours, refused = native_rows(path)
    assert theirs, "tshark found no MQTT: wrong port?"
    assert len(ours) == len(theirs)
    for mine, wire in zip(ours, theirs, strict=True):
        if mine[-1] == "ANOMALY":
            assert mine[:4] == wire[:4]  # MALFORMED: compared on frame, ends and type only
        else:
            assert mine == wire
    assert refused == {m for m in MALFORMED if m[0] == path.name}


@pytest.mark.parametrize("name", sorted(WEBSOCKET))
def test_websocket_capture_against_tsharks_unmasked_payloads(name: str) -> None:
    path = CAPTURES / name
    decoders: dict[str, ConnectionDecoder] = {}
    theirs: list[Row] = []
    for layers in _tshark(path, "websocket && data"):
        frame = int(layers["frame"]["frame.number"])
        src, dst = _ends(layers)
        stream = _many(layers["tcp"])[-1]["tcp.stream"]
        dec = decoders.setdefault(stream, ConnectionDecoder(lenient=False))
        # the client is the side that is not the broker port
        d = Direction.B2C if src.endswith(f":{_ports(path)[0]}") else Direction.C2B
        for chunk in _many(layers["data"]):
            data = bytes.fromhex(_flat(chunk)["data.data"].replace(":", ""))
            for packet in dec.feed(d, data):  # strict: a framing error raises
                assert not isinstance(packet, FramingAnomaly)
                theirs.append(_row(frame, src, dst, packet))
    ours, refused = native_rows(path)
    assert len(theirs) == WS_PACKETS.get(name, len(ours)) and theirs and not refused
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(TLS))
def test_tls_capture_encrypted_natively_and_decrypted_by_the_tshark_engine(name: str) -> None:
    path = CAPTURES / name
    evs = list(iter_events(path, ports=_ports(path)))
    opened = {e.conn.conn_id for e in evs if type(e) is ConnectionOpened}
    encrypted = {e.conn.conn_id for e in evs if type(e) is Anomaly and e.kind == "encrypted"
                 and e.conn is not None}
    assert opened and opened == encrypted
    assert not [e for e in evs if type(e) is MqttPacketEvent]
    assert all(e.conn.transport == "tls" for e in evs if type(e) is ConnectionClosed)
    theirs = tshark_rows(path)
    ours, refused = native_rows(path, engine="tshark",
                                tls_keylog=str(CAPTURES / INFO[name]["keylog"]))
    assert len(theirs) == 22 and not refused
    assert ours == theirs

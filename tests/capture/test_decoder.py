"""iter_events: capture files to the boundary events, on real and synthetic captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qosinspect.capture import iter_events
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.errors import CaptureError
from qosinspect.events import (
    Anomaly,
    CaptureStarted,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    MqttPacketEvent,
    StreamGap,
    TcpRetransmission,
)
from qosinspect.mqtt import ConnAck, Connect, PingReq, PingResp, PubAck, Publish, encode
from qosinspect.mqtt.enums import Direction
from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render, retransmit
from qosinspect.testing.tools import PROJECT_ROOT, shared_captures

CAPTURES = PROJECT_ROOT / "captures"


def events_of(data: bytes, **options: object) -> list[Event]:
    return list(iter_events(CaptureFile.from_bytes(data), **options))  # type: ignore[arg-type]


def packets(events: list[Event]) -> list[MqttPacketEvent]:
    return [e for e in events if type(e) is MqttPacketEvent]


def anomalies(events: list[Event], kind: str | None = None) -> list[Anomaly]:
    return [e for e in events if isinstance(e, Anomaly) and (kind is None or e.kind == kind)]


def simple_session(version: int = 4) -> TcpConversation:
    conv = TcpConversation()
    conv.send("c2b", encode(Connect("abc", protocol_version=version), version))
    conv.send("b2c", encode(ConnAck(), version))
    conv.send("c2b", encode(Publish("a/b", b"hello", 1, packet_id=7), version))
    conv.send("b2c", encode(PubAck(7), version))
    conv.close()
    return conv


def test_event_order_and_fields() -> None:
    conv = simple_session()
    evs = events_of(pcap_bytes(render(conv.segments), nanos=True))
    assert [type(e) for e in evs] == [CaptureStarted, ConnectionOpened] + [
        MqttPacketEvent] * 4 + [ConnectionClosed]
    # time 0 is the file's first frame (the SYN), not the first MQTT packet
    assert evs[0] == CaptureStarted(conv.segments[0].ts_ns, 1)
    pk = packets(evs)
    assert [type(e.packet) for e in pk] == [Connect, ConnAck, Publish, PubAck]
    assert [e.direction for e in pk] == [Direction.C2B, Direction.B2C] * 2
    assert all(e.version == 4 and not e.version_assumed for e in pk)
    # frames are 1-based file positions: SYN, SYN-ACK, ACK, then CONNECT is frame 4
    assert [e.frame for e in pk] == [4, 6, 8, 10]
    assert [e.first_frame for e in pk] == [4, 6, 8, 10]
    assert pk[0].ts_ns == conv.segments[3].ts_ns
    assert pk[2].wire_len == len(encode(Publish("a/b", b"hello", 1, packet_id=7)))
    assert str(pk[0].conn.client) == "10.0.0.1:50000"
    assert str(pk[0].conn.broker) == "10.0.0.2:1883"
    closed = evs[-1]
    assert isinstance(closed, ConnectionClosed) and closed.how == "fin"
    assert closed.tcp is not None
    assert closed.tcp.c2b.mqtt_packets == 2 and closed.tcp.b2c.mqtt_packets == 2


def test_packet_split_over_segments_takes_first_and_last_frame() -> None:
    conv = TcpConversation()
    conv.send("c2b", encode(Connect("abc")))
    conv.send("c2b", encode(Publish("t", b"x" * 300, 0)), segment_size=1, ack=False)
    conv.close()
    evs = events_of(pcap_bytes(render(conv.segments)))
    pub = packets(evs)[1]
    assert isinstance(pub.packet, Publish) and len(pub.packet.payload) == 300
    # CONNECT frame 4, its ACK 5, then 306 one-byte segments: frames 6 .. 311
    assert pub.first_frame == 6
    assert pub.frame == 6 + len(encode(Publish("t", b"x" * 300, 0))) - 1


def test_retransmission_event_and_stats() -> None:
    conv = simple_session()
    retransmit(conv.segments, 7)  # the PUBLISH segment, sent again
    stream = iter_events(CaptureFile.from_bytes(pcap_bytes(render(conv.segments))))
    evs = list(stream)
    rt = [e for e in evs if type(e) is TcpRetransmission]
    assert len(rt) == 1 and rt[0].frame == 9 and rt[0].direction is Direction.C2B
    assert len(packets(evs)) == 4
    stats = stream.tcp_stats[0]
    assert stats.c2b.retransmissions == 1 and stats.b2c.retransmissions == 0
    assert stream.summary.mqtt_packets == 4 and stream.summary.frames == len(conv.segments)


def test_gap_is_an_event_and_framing_resynchronises() -> None:
    conv = TcpConversation()
    conv.send("c2b", encode(Connect("abc")))
    lost = conv.send("c2b", encode(Publish("t", b"lost", 1, packet_id=1)))
    conv.send("c2b", encode(Publish("t", b"kept", 1, packet_id=2)))
    conv.close()
    segs = [s for s in conv.segments if s is not lost[0]]
    evs = events_of(pcap_bytes(render(segs)))
    gaps = [e for e in evs if type(e) is StreamGap]
    assert len(gaps) == 1 and gaps[0].missing_bytes == len(lost[0].payload)
    assert len(anomalies(evs, "stream_gap")) == 1
    assert [p.packet.payload for p in packets(evs)
            if isinstance(p.packet, Publish)] == [b"kept"]


def test_capture_starting_mid_stream_assumes_the_version_and_says_so() -> None:
    conv = TcpConversation(handshake=False)
    conv.send("c2b", encode(PingReq()))
    conv.send("b2c", encode(PingResp()))
    evs = events_of(pcap_bytes(render(conv.segments)), mqtt_version=5)
    assert [a.kind for a in anomalies(evs)] == ["missing_connect", "version_assumed"]
    pk = packets(evs)
    assert all(p.version == 5 and p.version_assumed for p in pk)
    # Both name the frame of the packet that raised them (frame numbers start at 1).
    assert [a.frame for a in anomalies(evs)] == [pk[0].frame] * 2 and pk[0].frame >= 1
    opened = next(e for e in evs if type(e) is ConnectionOpened)
    assert not opened.handshake_seen


def test_anomalies_of_a_first_packet_split_over_frames_name_the_frame_that_completed_it(
        ) -> None:
    conv = TcpConversation(handshake=False)
    conv.send("c2b", encode(Publish("a/b", b"x" * 40, 1, packet_id=9)), segment_size=20)
    frames = render(conv.segments)
    evs = events_of(pcap_bytes(frames))
    (pk,) = packets(evs)
    found = anomalies(evs)
    assert [a.kind for a in found] == ["missing_connect", "version_assumed"]
    # The PUBLISH began in frame 1 and was completed by the third data frame (the peer's ACKs
    # come after the data): that is where Wireshark shows it, and where its anomalies point.
    assert pk.first_frame == 1 and pk.frame == 3
    assert [a.frame for a in found] == [3, 3]


def test_version_inferred_from_mqtt5_only_bytes() -> None:
    conv = TcpConversation(handshake=False)
    conv.send("b2c", encode(PubAck(3, 0x10), 5))  # a reason code: MQTT 5 only
    conv.send("c2b", encode(Publish("t", b"p", 1, packet_id=4), 5))
    evs = events_of(pcap_bytes(render(conv.segments)))
    assert [a.kind for a in anomalies(evs)] == ["version_inferred", "missing_connect"]
    assert "PUBACK with remaining length 3" in anomalies(evs)[0].detail
    pk = packets(evs)
    assert [a.frame for a in anomalies(evs)] == [pk[0].frame] * 2 and pk[0].frame >= 1
    assert [p.version for p in pk] == [5, 5] and not any(p.version_assumed for p in pk)
    assert pk[1].packet == Publish("t", b"p", 1, packet_id=4)  # property length read as such


def test_late_evidence_switches_the_version_and_says_what_was_assumed() -> None:
    conv = TcpConversation(handshake=False)
    conv.send("c2b", encode(Publish("t", b"p", 1, packet_id=3), 5))  # decodes both ways
    conv.send("b2c", encode(PubAck(3, 0x10), 5))
    evs = events_of(pcap_bytes(render(conv.segments)))
    assert [a.kind for a in anomalies(evs)] == ["missing_connect", "version_assumed",
                                                 "version_inferred"]
    assert "decoded as MQTT 3.1.1" in anomalies(evs)[2].detail
    first, second = packets(evs)
    assert first.version == 4 and first.version_assumed
    assert second.version == 5 and not second.version_assumed
    assert second.packet == PubAck(3, 0x10)


def test_capture_error_after_every_event(tmp_path: Path) -> None:
    data = pcap_bytes(render(simple_session().segments[:-3]))  # no FINs
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(data[:-7])
    got: list[Event] = []
    with pytest.raises(CaptureError) as info:
        for ev in iter_events(bad):
            got.append(ev)
    assert "cut.pcap" in str(info.value) and "frame" in str(info.value)
    assert [type(p.packet) for p in packets(got)] == [Connect, ConnAck, Publish, PubAck]
    closed = [e for e in got if type(e) is ConnectionClosed]
    assert len(closed) == 1 and closed[0].how == "end_of_capture"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mqtt_version"):
        iter_events("x.pcap", mqtt_version=6)


@pytest.mark.parametrize("path", sorted(shared_captures().glob("*.pcap"))
                         + sorted(CAPTURES.glob("*.pcap")), ids=lambda p: p.name)
def test_real_captures_decode_with_every_connection_closed(path: Path) -> None:
    info = {c["file"]: c for c in json.loads((CAPTURES / "captures.json").read_text())}
    stream = iter_events(path, ports=info.get(path.name, {}).get("ports", [1883]))
    evs = list(stream)
    opened = {e.conn.conn_id for e in evs if type(e) is ConnectionOpened}
    closed = {e.conn.conn_id for e in evs if type(e) is ConnectionClosed}
    assert opened and opened == closed == set(stream.tcp_stats)
    if not info.get(path.name, {}).get("tls"):
        assert packets(evs)
    frames = [e.frame for e in evs if type(e) is MqttPacketEvent]
    assert frames == sorted(frames)


def test_shipped_captures_match_their_description() -> None:
    """captures.json says, per capture, the broker ports, the MQTT versions and whether it is
    WebSocket; the decoder must find exactly that (detection on, no ports given)."""
    info = json.loads((CAPTURES / "captures.json").read_text())
    for entry in info:
        if entry.get("tls"):
            continue  # test_agreement checks the TLS capture (encrypted, and with its key log)
        evs = list(iter_events(CAPTURES / entry["file"]))
        pk = packets(evs)
        assert {e.version for e in pk} == set(entry["versions"]), entry["file"]
        # (a port where only refused attempts went carries no MQTT packet)
        assert {e.conn.broker.port for e in pk} == set(entry["ports"]) - set(
            entry.get("attempt_ports", ())), entry["file"]
        transports = {e.conn.transport for e in pk}
        assert transports == ({"websocket"} if entry["websocket"] else {"tcp"}), entry["file"]
        assert all(e.direction is not None and e.conn.sides_known for e in pk)
        assert not anomalies(evs), (entry["file"], anomalies(evs)[:3])


def test_websocket_from_real_peers() -> None:
    evs = list(iter_events(CAPTURES / "mosquitto-websocket.pcap"))
    pk = packets(evs)
    assert len(pk) == 41
    # paho's client frames are masked, mosquitto's are not; both carry MQTT split freely
    assert {type(e.packet).__name__ for e in pk} >= {"Connect", "ConnAck", "Publish", "PubAck",
                                                      "PubRec", "PubRel", "PubComp",
                                                      "Subscribe", "SubAck", "Unsubscribe",
                                                      "UnsubAck", "Disconnect"}
    assert {(e.packet.qos, e.version) for e in pk if isinstance(e.packet, Publish)} == {
        (q, v) for q in (0, 1, 2) for v in (4, 5)}


def test_non_standard_port_needs_detection_or_the_port() -> None:
    path = CAPTURES / "mosquitto-nonstandard-port.pcap"
    assert not packets(list(iter_events(path, detect_any_port=False)))
    given = packets(list(iter_events(path, ports=(18867,), detect_any_port=False)))
    found = packets(list(iter_events(path)))
    assert len(found) == 26 and [e.packet for e in found] == [e.packet for e in given]
    assert all(e.conn.broker.port == 18867 for e in found)


def test_tls_port_is_reported_encrypted_with_tcp_statistics() -> None:
    conv = TcpConversation(broker=("10.0.0.2", 8883))
    conv.send("c2b", b"\x16\x03\x01\x00\x05hello")  # a TLS record header
    conv.send("b2c", b"\x16\x03\x03\x00\x02hi")
    conv.close()
    evs = events_of(pcap_bytes(render(conv.segments)))
    assert not packets(evs)
    assert [a.kind for a in anomalies(evs)] == ["encrypted"]
    closed = next(e for e in evs if type(e) is ConnectionClosed)
    assert closed.conn.transport == "tls" and closed.tcp is not None
    assert closed.tcp.c2b.data_bytes == 10 and closed.tcp.b2c.data_bytes == 7


def test_tls_handshake_on_the_mqtt_port_is_not_decoded_as_garbage() -> None:
    conv = TcpConversation()
    conv.send("c2b", b"\x16\x03\x01\x02\x00" + bytes(200))
    conv.close()
    evs = events_of(pcap_bytes(render(conv.segments)))
    assert not packets(evs) and [a.kind for a in anomalies(evs)] == ["encrypted"]


def test_sides_from_packets_when_ports_do_not_tell() -> None:
    # both ends on broker ports, no SYN: the first sender is taken for the client until a
    # broker-only packet (CONNACK) says otherwise
    conv = TcpConversation(client=("10.0.0.1", 1883), broker=("10.0.0.2", 1883),
                           handshake=False)
    conv.send("b2c", encode(ConnAck()))
    conv.send("c2b", encode(PingReq()))
    evs = events_of(pcap_bytes(render(conv.segments)))
    pk = packets(evs)
    assert [(type(e.packet), e.direction) for e in pk] == [(ConnAck, Direction.B2C),
                                                          (PingReq, Direction.C2B)]
    assert pk[1].conn.sides_known and str(pk[1].conn.client) == "10.0.0.1:1883"


def test_memory_does_not_grow_with_closed_connections_when_stats_are_not_kept() -> None:
    segs = []
    for i in range(300):
        conv = TcpConversation(client=("10.0.0.1", 20000 + i), start_ns=1_700_000_000 * 10**9
                               + i * 10**9)
        conv.send("c2b", encode(Connect(f"c{i}")))
        conv.close()
        segs += conv.segments
    data = pcap_bytes(render(segs))
    kept = iter_events(CaptureFile.from_bytes(data))
    closed = [e for e in kept if type(e) is ConnectionClosed]
    assert len(closed) == 300 and len(kept.tcp_stats) == 300
    flat = iter_events(CaptureFile.from_bytes(data), keep_tcp_stats=False)
    closed = [e for e in flat if type(e) is ConnectionClosed]
    assert len(closed) == 300 and all(e.tcp is not None for e in closed)
    assert flat.tcp_stats == {}

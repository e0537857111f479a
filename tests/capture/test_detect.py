"""MQTT found mid-stream on any port, and streams not decoded said (issue 11 §4).

The run heuristic (qosinspect/capture/detect.py): a stream whose handshake was not captured is
MQTT when one direction carries RUN_PACKETS (4) consecutive packets that decode strictly.
Python MQTT clients' wake-up socket pairs (paho writes b"0" per wake-up on a TCP pair on
127.0.0.1) must not pass: shown on vectors and on a real paho client captured by tcpdump.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qosinspect.capture import iter_events
from qosinspect.capture.detect import PROBE_LIMIT, RUN_PACKETS, mqtt_run
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.events import ConnectionOpened, MqttPacketEvent, UndecodedStream
from qosinspect.mqtt import PingReq, PubAck, Publish, encode
from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render
from qosinspect.testing.tools import PROJECT_ROOT, require_tool

PUB = encode(Publish("a/b", b"hello", 0))
SCRIPT = PROJECT_ROOT / "captures" / "scripts" / "midstream_paho.py"
SHIPPED = PROJECT_ROOT / "captures" / "field" / "paho-midstream-17501.pcap"


# -- the heuristic on bytes -------------------------------------------------------------------

def test_a_run_of_packets_is_mqtt() -> None:
    assert RUN_PACKETS == 4
    assert mqtt_run(PUB * 4, [0]) is True
    assert mqtt_run(PUB * 3, [0]) is None            # not yet: one more packet decides
    assert mqtt_run(PUB * 3 + PUB[:3], [0]) is None  # the fourth is incomplete
    mixed = PUB + encode(PubAck(3)) + encode(PingReq()) + encode(Publish("x", b"", 1, packet_id=7))
    assert mqtt_run(mixed, [0]) is True


def test_a_capture_starting_inside_a_packet_finds_the_run_at_a_later_segment() -> None:
    tail = PUB[5:]
    assert mqtt_run(tail + PUB * 4, [0]) is None
    assert mqtt_run(tail + PUB * 4, [0, len(tail)]) is True


@pytest.mark.parametrize("data", [
    b"0" * 200,                                     # paho's wake-up bytes: 0x30 0x30 ...
    b"\x00" * 64,                                   # reserved packet type 0
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4,
    b"\x16\x03\x01\x02\x00" + bytes(512),           # a TLS ClientHello
    b"\xc0\x00" * 3 + b"\x00",                      # three PINGREQs, then type 0
    PUB[:1] + b"\x80\x80\x80\x80\x01",              # a remaining length of 5 bytes
])
def test_what_is_not_mqtt(data: bytes) -> None:
    starts = list(range(0, len(data), max(1, len(data) // 4)))[:4]
    assert mqtt_run(data, starts) is False or (mqtt_run(data, starts) is None
                                               and len(data) < PROBE_LIMIT)
    assert mqtt_run(data + bytes(PROBE_LIMIT), starts) is False


def test_wake_up_bytes_never_become_mqtt() -> None:
    for n in range(1, 600, 7):
        assert mqtt_run(b"0" * n, list(range(min(n, 4)))) is not True


# -- in a capture ------------------------------------------------------------------------------

def _merge(*convs: TcpConversation) -> bytes:
    frames = sorted((f for c in convs for f in render(c.segments)), key=lambda f: f.ts_ns)
    return pcap_bytes(frames, nanos=True)


def _events(data: bytes, **options: Any) -> list[Any]:
    return list(iter_events(CaptureFile.from_bytes(data), **options))


def test_four_mid_stream_streams_on_port_17501_are_all_found() -> None:
    """The issue's case: four MQTT streams on 17501, capture started after their CONNECTs;
    reported as one connection (or none) before."""
    convs = []
    for i in range(4):
        c = TcpConversation(("10.0.0.1", 40000 + i), ("10.0.0.2", 17501), handshake=False,
                            start_ns=1_700_000_000_000_000_000 + i * 1000)
        for n in range(5):
            c.send("c2b", encode(Publish(f"t/{i}", b"v%d" % n, 1, packet_id=n + 1)))
            c.send("b2c", encode(PubAck(n + 1)))
        convs.append(c)
    wake = TcpConversation(("127.0.0.1", 50000), ("127.0.0.1", 50001), handshake=False)
    for _ in range(60):
        wake.send("c2b", b"0")
    evs = _events(_merge(*convs, wake))
    opened = [e for e in evs if type(e) is ConnectionOpened]
    assert sorted(e.conn.client.port for e in opened) == [40000, 40001, 40002, 40003]
    assert all(not e.handshake_seen and e.conn.broker.port == 17501 for e in opened)
    assert len([e for e in evs if type(e) is MqttPacketEvent]) == 40
    assert [(u.client.port, u.data_bytes, u.reason) for u in evs
            if type(u) is UndecodedStream] == [(50000, 60, "not_mqtt")]
    # with detection off, nothing of it is decoded, and all five are said
    off = _events(_merge(*convs, wake), detect_any_port=False)
    assert not [e for e in off if type(e) is MqttPacketEvent]
    und = [e for e in off if type(e) is UndecodedStream]
    assert sorted(u.port for u in und) == [17501] * 4 + [50000]
    assert {u.reason for u in und} == {"detection_off"}


def test_a_stream_with_its_handshake_must_start_with_connect() -> None:
    """A run of packets is not enough when the SYN was captured: the client must have sent a
    CONNECT first [MQTT-3.1.0-1]."""
    c = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 17501))
    for _ in range(6):
        c.send("c2b", PUB)
    evs = _events(_merge(c))
    assert not [e for e in evs if type(e) is MqttPacketEvent]
    assert [u.reason for u in evs if type(u) is UndecodedStream] == ["not_mqtt"]


# -- real paho clients on the loopback, captured by tcpdump ----------------------------------

def _check_paho_capture(path: Path) -> None:
    evs = list(iter_events(path))
    opened = [e for e in evs if type(e) is ConnectionOpened]
    undecoded = [e for e in evs if type(e) is UndecodedStream]
    # the four MQTT streams to mosquitto on 17501 (no SYN, no CONNECT in the file) ...
    assert len(opened) == 4 and {e.conn.broker.port for e in opened} == {17501}
    assert all(not e.handshake_seen for e in opened)
    packets = [e for e in evs if type(e) is MqttPacketEvent]
    assert {type(e.packet).__name__ for e in packets} == {"Publish", "PubAck"}
    assert len([e for e in packets if type(e.packet) is Publish]) == 2 * 4 * 20
    # ... and paho's four wake-up socket pairs, bytes b"0" only: not MQTT, but said
    assert len(undecoded) == 4
    assert all(17501 not in (u.client.port, u.server.port) for u in undecoded)
    assert all(u.reason in ("not_mqtt", "undecided") and u.data_bytes >= 20 for u in undecoded)


def test_shipped_paho_capture() -> None:
    _check_paho_capture(SHIPPED)


@pytest.mark.tools
def test_paho_wake_up_sockets_captured_live_are_not_mqtt(tmp_path: Path) -> None:
    """Records the capture again in a private network namespace (root): mosquitto on 17501,
    four paho clients with loop_start(), tcpdump started after their CONNECTs."""
    for tool in ("unshare", "tcpdump", "mosquitto", "ip"):
        require_tool(tool)
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace and tcpdump")
    out = tmp_path / "midstream.pcap"
    proc = subprocess.run(["unshare", "-n", str(PROJECT_ROOT / ".venv" / "bin" / "python"),
                           str(SCRIPT), str(out)], capture_output=True, text=True, timeout=90,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    _check_paho_capture(out)

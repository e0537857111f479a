"""The pipeline's choice of streams: MQTT ports, probing other ports, TLS, WebSocket."""

from __future__ import annotations

from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.pipeline import CapturePipeline, looks_like_connect
from qosinspect.capture.records import (
    CaptureRecord,
    FirstFrame,
    FlowClosed,
    FlowOpened,
    Notice,
    StreamData,
    Undecoded,
)
from qosinspect.events import UndecodedStream
from qosinspect.mqtt import ConnAck, Connect, encode
from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render

from ._util import run_bytes, streams
from .test_websocket import REQUEST, RESPONSE, frame

CONNECT5 = encode(Connect("probe", protocol_version=5), 5)


def conversation(port: int = 40001) -> TcpConversation:
    return TcpConversation(("10.0.0.1", 50000), ("10.0.0.2", port))


def test_looks_like_connect() -> None:
    assert looks_like_connect(CONNECT5) is True
    assert looks_like_connect(encode(Connect("x", protocol_version=3), 3)) is True
    for n in range(0, 8):
        assert looks_like_connect(CONNECT5[:n]) is None, n  # undecided until the name shows
    assert looks_like_connect(b"\x20\x02\x00\x00") is False
    assert looks_like_connect(b"\x10\x05\x00\x04MQTT") is False       # too short for a CONNECT
    assert looks_like_connect(b"\x10\x10\x00\x04HTTP\x04") is False
    assert looks_like_connect(b"\x10\xff\xff\xff\xff\x7f") is False   # length of 5 bytes


def test_connect_split_byte_by_byte_on_another_port_is_found() -> None:
    conv = conversation()
    conv.send("c2b", CONNECT5, segment_size=1)
    conv.send("b2c", encode(ConnAck(), 5))
    conv.close()
    recs = run_bytes(pcap_bytes(render(conv.segments)))
    kinds = [type(r) for r in recs]
    assert kinds[0] is FlowOpened and kinds[-1] is FlowClosed
    assert streams(recs) == {(0, "c2b"): [CONNECT5], (0, "b2c"): [encode(ConnAck(), 5)]}
    frames = [r.frame for r in recs if type(r) is StreamData and r.direction.value == "c2b"]
    assert frames == list(range(4, 4 + len(CONNECT5)))  # each byte keeps its frame


def undecoded(recs: list[CaptureRecord]) -> list[UndecodedStream]:
    return [r.stream for r in recs if type(r) is Undecoded]


def test_other_protocols_on_other_ports_are_dropped_quickly() -> None:
    conv = conversation(8080)
    conv.send("c2b", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conv.send("b2c", b"HTTP/1.1 200 OK\r\n\r\nhello")
    conv.close()
    pipe = CapturePipeline(CaptureFile.from_bytes(pcap_bytes(render(conv.segments))))
    recs = list(pipe)
    # nothing of the stream itself, but it is said that it was not decoded (issue 11 §4)
    assert [type(r) for r in recs] == [FirstFrame, Undecoded]
    assert pipe.flows_ignored == 1 and pipe.flows_tracked == 0
    u = undecoded(recs)[0]
    assert (u.reason, u.port, u.sides_known, u.conn_id) == ("not_mqtt", 8080, True, 0)
    assert u.data_bytes == len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") + len(
        b"HTTP/1.1 200 OK\r\n\r\nhello")
    assert (u.first_frame, u.frame) == (1, len(conv.segments))


def test_server_speaking_first_on_an_unknown_port_is_not_mqtt() -> None:
    conv = conversation()
    conv.send("b2c", encode(ConnAck()))
    conv.send("c2b", CONNECT5)
    recs = run_bytes(pcap_bytes(render(conv.segments)))
    assert [(u.reason, u.data_bytes) for u in undecoded(recs)] == [
        ("not_mqtt", 4 + len(CONNECT5))] and len(recs) == 1


def test_undecided_probe_is_given_up_after_16_kb() -> None:
    conv = conversation()
    conv.send("c2b", b"GET /" + b"x" * 20000, segment_size=1000)
    recs = run_bytes(pcap_bytes(render(conv.segments)))
    assert [(u.reason, u.data_bytes) for u in undecoded(recs)] == [("not_mqtt", 20005)]
    assert len(recs) == 1


def test_detection_off_ignores_other_ports() -> None:
    conv = conversation()
    conv.send("c2b", CONNECT5)
    data = pcap_bytes(render(conv.segments))
    recs = run_bytes(data, detect_any_port=False)
    assert [(u.reason, u.data_bytes, u.port) for u in undecoded(recs)] == [
        ("detection_off", len(CONNECT5), 40001)] and len(recs) == 1
    assert streams(run_bytes(data, detect_any_port=False, ports=(40001,))) == {
        (0, "c2b"): [CONNECT5]}


def test_websocket_upgrade_on_another_port_split_over_segments() -> None:
    conv = conversation(9001)
    conv.send("c2b", REQUEST + frame(CONNECT5, mask=b"abcd"), segment_size=17)
    conv.send("b2c", RESPONSE + frame(encode(ConnAck(), 5)))
    conv.close()
    recs = run_bytes(pcap_bytes(render(conv.segments)))
    assert streams(recs) == {(0, "c2b"): [CONNECT5], (0, "b2c"): [encode(ConnAck(), 5)]}
    opened = next(r for r in recs if type(r) is FlowOpened)
    assert opened.flow.transport == "websocket"
    assert [r.kind for r in recs if type(r) is Notice] == ["websocket"]


def test_tls_on_another_port_is_not_reported_but_on_an_mqtt_port_it_is() -> None:
    conv = conversation(4433)
    conv.send("c2b", b"\x16\x03\x01\x00\x10" + bytes(16))
    conv.close()
    data = pcap_bytes(render(conv.segments))
    recs = run_bytes(data)
    assert [(u.reason, u.data_bytes, u.port) for u in undecoded(recs)] == [
        ("not_mqtt", 21, 4433)] and len(recs) == 1
    recs = run_bytes(data, ports=(4433,))
    assert [r.kind for r in recs if type(r) is Notice] == ["encrypted"]
    assert not streams(recs)
    closed = [r for r in recs if type(r) is FlowClosed]
    assert closed and closed[0].flow.transport == "tls"
    assert closed[0].flow.c2b.data_bytes == 21  # counted, not passed up

"""MQTT over WebSocket, seen passively: frames to a byte stream (RFC 6455), and the tunnel.

[MQTT-6.0.0-1] MQTT goes in binary frames; [MQTT-6.0.0-2] packets need not align with frames;
[MQTT-6.0.0-4] the subprotocol is "mqtt". Client frames are masked, server frames not (RFC 6455
5.1); control frames may sit between the fragments of a message (5.4).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.capture.websocket import (
    WebSocketFrameParser,
    WebSocketTunnel,
    WsControl,
    WsHandshake,
    WsProblem,
    looks_like_ws_upgrade,
    parse_http_head,
    unmask,
)

REQUEST = (b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")


def frame(payload: bytes, opcode: int = 2, *, fin: bool = True, mask: bytes | None = None,
          rsv: int = 0) -> bytes:
    """One WebSocket frame, with the shortest length encoding."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def payload_of(items: list[object]) -> bytes:
    return b"".join(i for i in items if isinstance(i, bytes))


def test_unmask_is_an_involution_at_every_phase() -> None:
    key = b"\x01\x02\x03\x04"
    data = os.urandom(37)
    for phase in range(4):
        assert unmask(unmask(data, key, phase), key, phase) == data
    assert unmask(b"\x00" * 6, key, 1) == b"\x02\x03\x04\x01\x02\x03"
    assert unmask(b"", key) == b""


def test_http_head_and_upgrade_detection() -> None:
    size, start, headers = parse_http_head(REQUEST + b"rest")  # type: ignore[misc]
    assert size == len(REQUEST) and start == "GET /mqtt HTTP/1.1"
    assert headers["sec-websocket-protocol"] == "mqtt"
    assert parse_http_head(REQUEST[:-2]) is None
    assert looks_like_ws_upgrade(REQUEST) is True
    assert looks_like_ws_upgrade(REQUEST[:30]) is None
    assert looks_like_ws_upgrade(b"GE") is None
    assert looks_like_ws_upgrade(b"POST / HTTP/1.1\r\n\r\n") is False
    no_mqtt = REQUEST.replace(b"Sec-WebSocket-Protocol: mqtt\r\n", b"")
    assert looks_like_ws_upgrade(no_mqtt) is False
    assert looks_like_ws_upgrade(no_mqtt, require_mqtt=False) is True
    plain = REQUEST.replace(b"Upgrade: websocket\r\n", b"")
    assert looks_like_ws_upgrade(plain) is False


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_every_length_encoding_masked_and_not(n: int) -> None:
    data = os.urandom(n)
    client = WebSocketFrameParser(from_client=True)
    assert payload_of(client.feed(frame(data, mask=b"abcd"))) == data
    server = WebSocketFrameParser(from_client=False)
    assert payload_of(server.feed(frame(data))) == data


def test_control_frames_between_fragments_stay_out_of_the_stream() -> None:
    p = WebSocketFrameParser(from_client=False)
    stream = (frame(b"\x30\x05\x00\x01", fin=False) + frame(b"ping!", opcode=9)
              + frame(b"ta", opcode=0, fin=False) + frame(b"", opcode=10)
              + frame(b"x", opcode=0) + frame(b"\x03\xe8bye", opcode=8))
    items = p.feed(stream)
    assert payload_of(items) == b"\x30\x05\x00\x01tax"
    controls = [i for i in items if isinstance(i, WsControl)]
    assert [c.opcode for c in controls] == [9, 10, 8]
    assert controls[0].payload == b"ping!" and controls[2].close_code == 1000
    assert not [i for i in items if isinstance(i, WsProblem)]
    assert p.pings == 1 and p.closed


def test_problems_are_reported_not_raised() -> None:
    p = WebSocketFrameParser(from_client=True)
    items = p.feed(frame(b"ab") + frame(b"cd", opcode=1, mask=b"1234"))
    problems = [i.detail for i in items if isinstance(i, WsProblem)]
    assert any("not masked" in d for d in problems)
    assert any("text frame" in d and "[MQTT-6.0.0-1]" in d for d in problems)
    assert payload_of(items) == b"abcd"  # still decoded
    assert not p.broken
    q = WebSocketFrameParser(from_client=False)
    items = q.feed(frame(b"x", opcode=0) + frame(b"y", fin=False) + frame(b"z"))
    details = [i.detail for i in items if isinstance(i, WsProblem)]
    assert any("continuation frame outside" in d for d in details)
    assert any("new data frame inside" in d for d in details)


@pytest.mark.parametrize("bad, what", [
    (frame(b"x", rsv=4), "reserved bits"),
    (frame(b"x", opcode=3), "reserved opcode 3"),
    (bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"), "high bit"),
])
def test_lost_framing_stops_the_direction(bad: bytes, what: str) -> None:
    p = WebSocketFrameParser(from_client=False)
    items = p.feed(bad + frame(b"after"))
    fatal = [i for i in items if isinstance(i, WsProblem) and i.fatal]
    assert len(fatal) == 1 and what in fatal[0].detail
    assert p.broken and b"after" not in payload_of(items)
    assert p.feed(frame(b"more")) == []


def test_long_control_frame_is_a_problem() -> None:
    p = WebSocketFrameParser(from_client=False)
    items = p.feed(frame(b"p" * 126, opcode=9))
    assert any(isinstance(i, WsProblem) and "125" in i.detail for i in items)


def test_tunnel_handshake_then_frames_in_the_same_segment() -> None:
    t = WebSocketTunnel()
    items = t.feed(True, REQUEST + frame(b"\x10\x02", mask=b"kkkk"))
    assert isinstance(items[0], WsHandshake) and items[0].accepted
    assert items[0].subprotocol == "mqtt"
    assert payload_of(items) == b"\x10\x02"
    items = t.feed(False, RESPONSE[:20])
    assert items == []
    items = t.feed(False, RESPONSE[20:] + frame(b"\x20\x02\x00\x00"))
    assert isinstance(items[0], WsHandshake) and not items[0].from_client
    assert t.subprotocol == "mqtt" and payload_of(items) == b"\x20\x02\x00\x00"


def test_tunnel_refusal_and_gaps() -> None:
    t = WebSocketTunnel()
    t.feed(True, REQUEST)
    items = t.feed(False, b"HTTP/1.1 403 Forbidden\r\n\r\n" + frame(b"x"))
    assert any(isinstance(i, WsProblem) and i.fatal for i in items)
    assert t.feed(False, frame(b"y")) == []
    gap = t.gap(True)
    assert len(gap) == 1 and isinstance(gap[0], WsProblem) and gap[0].fatal
    assert t.gap(True) == [] and t.feed(True, frame(b"z", mask=b"mmmm")) == []
    u = WebSocketTunnel(max_head=64)
    assert any(isinstance(i, WsProblem) for i in u.feed(True, b"GET / HTTP/1.1\r\n" + b"X" * 80))
    v = WebSocketTunnel()
    assert [i.detail for i in v.gap(False) if isinstance(i, WsProblem)] == [
        "TCP gap inside the HTTP upgrade"]


@settings(max_examples=60, deadline=None)
@given(stream=st.binary(min_size=1, max_size=4000), seed=st.integers(0, 2**32),
       from_client=st.booleans())
def test_any_framing_and_any_chunking_give_back_the_stream(stream: bytes, seed: int,
                                                           from_client: bool) -> None:
    """MQTT bytes cut into frames at random (fragmented messages, pings between fragments),
    the frames' bytes cut into TCP chunks at random: the byte stream comes back exactly
    [MQTT-6.0.0-2]."""
    rnd = random.Random(seed)
    wire = b""
    pos = 0
    while pos < len(stream):
        n = rnd.randint(1, 300)
        piece = stream[pos:pos + n]
        pos += n
        fin = pos >= len(stream) or rnd.random() < 0.5
        opcode = 2 if wire == b"" or rnd.random() < 0.5 else 0
        mask = rnd.randbytes(4) if from_client else None
        wire += frame(piece, opcode, fin=fin, mask=mask)
        if rnd.random() < 0.2:
            wire += frame(b"hi", 9, mask=mask)
    p = WebSocketFrameParser(from_client)
    out: list[object] = []
    i = 0
    while i < len(wire):
        n = rnd.randint(1, 64)
        out += p.feed(wire[i:i + n])
        i += n
    assert payload_of(out) == stream
    assert not [x for x in out if isinstance(x, WsProblem) and x.fatal]

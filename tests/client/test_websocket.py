"""The client side of MQTT over WebSocket: RFC 6455 vectors, and the client against the
broker's server side (qosinspect.broker.websocket) and against scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.broker.websocket import WebSocketServer
from qosinspect.client.websocket import (
    WebSocketError,
    accept_key,
    build_frame,
    websocket_connect,
)

from ._util import run


def test_accept_key_matches_rfc6455_example() -> None:
    """RFC 6455 section 1.3: the sample nonce and its accept value."""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_masked_frame_layout() -> None:
    """RFC 6455 5.7: a masked single-frame "Hello" with mask 37 fa 21 3d."""
    frame = build_frame(0x1, b"Hello", bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")
    assert build_frame(0x2, b"\x00" * 200, None)[:4] == bytes((0x82, 126, 0, 200))
    assert build_frame(0x2, b"\x00" * 70000, None)[:2] == bytes((0x82, 127))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _with_server(handler: Handler,
                       body: Callable[[int], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await body(port)
    finally:
        server.close()
        await server.wait_closed()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=70_000), min_size=1, max_size=4))
def test_client_frames_reach_the_broker_side_intact(chunks: list[bytes]) -> None:
    """Masked client frames unmask to the same bytes on the broker's WebSocket stream, and the
    broker's unmasked frames come back as the same stream [MQTT-6.0.0-2]."""
    async def main() -> None:
        received: list[bytes] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server = WebSocketServer()
            total = sum(len(c) for c in chunks)
            got = b""
            while len(got) < total:
                data = await reader.read(65536)
                assert data, "the client closed early"
                mqtt, reply = server.feed(data)
                writer.write(reply)
                got += mqtt
            received.append(got)
            assert server.subprotocol == "mqtt"              # [MQTT-6.0.0-3]
            writer.write(server.frame(got[::-1]))
            await writer.drain()

        async def body(port: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            ws = await websocket_connect(reader, writer, host="127.0.0.1", port=port)
            for chunk in chunks:
                ws.write(chunk)
            want = b"".join(chunks)
            echo = b""
            while len(echo) < len(want):
                data = await ws.read()
                assert data
                echo += data
            assert echo == want[::-1]
            ws.close()

        await _with_server(handler, body)
        assert received == [b"".join(chunks)]

    run(main())


async def _scripted(answer: Callable[[str], bytes], then: bytes = b"") -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                   if line.lower().startswith("sec-websocket-key"))
        writer.write(answer(key) + then)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
    return handler


def _ok(key: str, protocol: str = "mqtt", accept: str | None = None) -> bytes:
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept or accept_key(key)}\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n").encode()


@pytest.mark.parametrize("answer, match", [
    (lambda key: b"HTTP/1.1 404 Not Found\r\n\r\n", "refused the WebSocket upgrade"),
    (lambda key: _ok(key, accept=base64.b64encode(b"x" * 20).decode()),
     "Sec-WebSocket-Accept"),
    (lambda key: _ok(key, protocol="chat"), r"MQTT-6\.0\.0-4"),
])
def test_bad_handshakes_are_refused(answer: Callable[[str], bytes], match: str) -> None:
    async def main() -> None:
        async def body(port: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(WebSocketError, match=match):
                await websocket_connect(reader, writer, host="127.0.0.1", port=port)
            writer.close()
        await _with_server(await _scripted(answer), body)
    run(main())


@pytest.mark.parametrize("frame, match", [
    (build_frame(0x1, b"text", None), r"MQTT-6\.0\.0-1"),
    (build_frame(0x2, b"masked", b"abcd"), "masked frame from the server"),
])
def test_bad_frames_from_the_server_are_errors(frame: bytes, match: str) -> None:
    """Only binary frames carry MQTT [MQTT-6.0.0-1]; a server never masks (RFC 6455 5.1)."""
    async def main() -> None:
        async def body(port: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            ws = await websocket_connect(reader, writer, host="127.0.0.1", port=port)
            with pytest.raises(WebSocketError, match=match):
                await ws.read()
            ws.abort()
        await _with_server(await _scripted(_ok, frame), body)
    run(main())


def test_ping_fragments_and_close() -> None:
    """A ping is answered and skipped, continuation frames join the stream, close ends it."""
    frames = (build_frame(0x9, b"hi", None)
              + bytes((0x02, 3)) + b"abc"             # binary, not final
              + bytes((0x80, 2)) + b"de"              # continuation, final
              + build_frame(0x8, b"\x03\xe8", None))
    async def main() -> None:
        async def body(port: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            ws = await websocket_connect(reader, writer, host="127.0.0.1", port=port)
            got = b""
            while data := await ws.read():
                got += data
            assert got == b"abcde" and ws.close_code == 1000
            ws.close()
        await _with_server(await _scripted(_ok, frames), body)
    run(main())

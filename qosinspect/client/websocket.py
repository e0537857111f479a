"""A minimal RFC 6455 WebSocket client side, enough to carry MQTT (MQTT 5.0 section 6).

The broker's :mod:`qosinspect.broker.websocket` is the server side (it unmasks client frames and
sends unmasked ones), so the client needs its own: the opening handshake with a random key and
the ``mqtt`` subprotocol [MQTT-6.0.0-3], checking the server's ``Sec-WebSocket-Accept`` and its
choice of ``mqtt`` [MQTT-6.0.0-4]; masked frames out (RFC 6455 5.3), unmasked frames in
(5.1); MQTT bytes only in binary frames [MQTT-6.0.0-1], whose boundaries need not match packet
boundaries [MQTT-6.0.0-2], so the stream is the concatenation of their payloads; ping answered
by pong, close by close.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

__all__ = ["WebSocketClientStream", "WebSocketError", "accept_key", "build_frame",
           "websocket_connect"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_FRAME = 16 * 1024 * 1024
_MAX_HEADER = 16 * 1024


class WebSocketError(ValueError):
    """The WebSocket handshake or framing went wrong (says what)."""


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def build_frame(opcode: int, payload: bytes, mask: bytes | None) -> bytes:
    """One final frame; masked when ``mask`` (4 bytes) is given, as a client must send."""
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, bit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + _xor(payload, mask)


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    key = int.from_bytes((mask * (len(data) // 4 + 1))[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


async def websocket_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                            host: str, port: int, path: str = "/mqtt",
                            subprotocol: str = "mqtt") -> WebSocketClientStream:
    """Send the upgrade request and check the 101 answer; WebSocketError if it is not right."""
    key = base64.b64encode(os.urandom(16)).decode()
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (f"GET {path or '/'} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n")
    writer.write(request.encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise WebSocketError("the WebSocket handshake answer is too long") from None
    except asyncio.IncompleteReadError:
        raise WebSocketError("the server closed the connection during the WebSocket "
                             "handshake") from None
    if len(head) > _MAX_HEADER:
        raise WebSocketError("the WebSocket handshake answer is too long")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise WebSocketError(f"the server refused the WebSocket upgrade: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError("the 101 answer lacks 'Upgrade: websocket'")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError("wrong Sec-WebSocket-Accept in the server's answer "
                             "(RFC 6455 4.1)")
    chosen = headers.get("sec-websocket-protocol", "")
    if chosen != subprotocol:
        raise WebSocketError(f"the server chose WebSocket subprotocol {chosen!r}, not "
                             f"{subprotocol!r} [MQTT-6.0.0-4]")
    return WebSocketClientStream(reader, writer)


class WebSocketClientStream:
    """MQTT bytes over WebSocket binary frames, client side."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._closed = False
        #: The close code the server sent, if it closed.
        self.close_code: int | None = None

    async def read(self) -> bytes:
        """The payload of the next data frame(s); b"" when the server closes."""
        try:
            while True:
                data = await self._frame()
                if data is None:
                    return b""
                if data:
                    return data
        except asyncio.IncompleteReadError:
            return b""

    async def _frame(self) -> bytes | None:
        b0, b1 = await self.reader.readexactly(2)
        opcode = b0 & 0x0F
        length = b1 & 0x7F
        if b1 & 0x80:
            raise WebSocketError("masked frame from the server (RFC 6455 5.1)")
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        if length > _MAX_FRAME:
            raise WebSocketError(f"WebSocket frame of {length} bytes is too large")
        payload = await self.reader.readexactly(length) if length else b""
        if opcode in (0x0, 0x2):
            return payload
        if opcode == 0x8:
            if len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
            self._send_close(payload[:2])
            return None
        if opcode == 0x9:
            self._send(0xA, payload)
            return b""
        if opcode == 0xA:
            return b""
        raise WebSocketError(f"WebSocket opcode {opcode:#x}: MQTT travels in binary frames "
                             "only [MQTT-6.0.0-1]")

    def _send(self, opcode: int, payload: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(build_frame(opcode, payload, os.urandom(4)))

    def _send_close(self, code: bytes) -> None:
        if not self._closed:
            self._closed = True
            self._send(0x8, code)

    def write(self, data: bytes) -> None:
        self._send(0x2, data)

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def finish(self) -> None:
        """Start the closing handshake: the server answers the close frame and closes the TCP
        connection, which :meth:`read` sees as the end (RFC 6455 7.1.1)."""
        self._send_close(b"\x03\xe8")                   # 1000: normal closure

    def close(self) -> None:
        self.finish()
        self.writer.close()

    def abort(self) -> None:
        self._closed = True
        self.writer.transport.abort()

    async def wait_closed(self) -> None:
        await self.writer.wait_closed()

"""A minimal RFC 6455 WebSocket server side, enough to carry MQTT (subprotocol ``mqtt``).

MQTT over WebSocket puts the MQTT byte stream in binary frames; frame and packet boundaries need
not line up, so the stream is simply the concatenation of payloads (MQTT 5 section 6). This is
the opening handshake (section 4.2), client-to-server unmasking, ping/pong and close; text
frames and extensions are refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

__all__ = ["WebSocketStream", "accept_websocket"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_FRAME = 16 * 1024 * 1024


async def accept_websocket(reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> WebSocketStream:
    """Read the HTTP upgrade request and answer 101; ValueError if it is not one."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("GET "):
        raise ValueError("not a WebSocket upgrade request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key")
    if headers.get("upgrade", "").lower() != "websocket" or not key:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        raise ValueError("missing Upgrade: websocket or Sec-WebSocket-Key")
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    reply = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Accept: {accept}\r\n")
    if "mqtt" in protocols:
        reply += "Sec-WebSocket-Protocol: mqtt\r\n"
    writer.write((reply + "\r\n").encode())
    return WebSocketStream(reader, writer)


class WebSocketStream:
    """Binary-frame byte stream with the same interface as the broker's TCP stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._closed = False

    async def read(self) -> bytes:
        """The payload of the next data frame(s); b"" when the peer closes."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            opcode = b0 & 0x0F
            masked = b1 & 0x80
            length = b1 & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            if not masked or length > _MAX_FRAME:
                raise ValueError("unmasked or oversized client frame (RFC 6455 5.1)")
            mask = await self.reader.readexactly(4)
            data = bytearray(await self.reader.readexactly(length))
            for i in range(length):
                data[i] ^= mask[i & 3]
            if opcode in (0x0, 0x2):
                if data:
                    return bytes(data)
                continue
            if opcode == 0x8:
                self._frame(0x8, bytes(data[:2]))
                return b""
            if opcode == 0x9:
                self._frame(0xA, bytes(data))
                continue
            if opcode == 0xA:
                continue
            raise ValueError(f"WebSocket opcode {opcode:#x} not supported for MQTT")

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
        self.writer.write(head + payload)

    def write(self, data: bytes) -> None:
        self._frame(0x2, data)

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self.writer.is_closing():
                self._frame(0x8, b"\x03\xe8")
        self.writer.close()

"""The server side of RFC 6455 WebSocket, sans-I/O, enough to carry MQTT (subprotocol ``mqtt``).

MQTT over WebSocket puts the MQTT byte stream in binary frames; frame and packet boundaries need
not line up, so the stream is simply the concatenation of payloads (MQTT 5.0 section 6). Bytes
from the socket go in (:meth:`WebSocketServer.feed`), MQTT bytes and bytes to send back come
out; :meth:`WebSocketServer.frame` wraps MQTT bytes going out. What it does:

- the opening handshake (RFC 6455 section 4.2): a ``GET`` with ``Upgrade: websocket`` and a
  ``Sec-WebSocket-Key`` gets ``101 Switching Protocols``, choosing ``mqtt`` when offered
  [MQTT-6.0.0-3]; anything else gets ``400`` and the connection ends. The request head is
  limited to 8 KiB.
- client frames must be masked (RFC 6455 5.1); binary and continuation frames carry MQTT, a text
  frame is refused [MQTT-6.0.0-1]; ping is answered with pong; close is answered and ends.
- frames larger than ``max_frame`` are refused, so a client cannot make the server buffer more.

Errors raise :class:`WebSocketError`; the driver then sends :attr:`WebSocketServer.pending`
(a 400 or a close frame) and closes the connection.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["WebSocketError", "WebSocketServer"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 8192


class WebSocketError(ValueError):
    """The peer broke RFC 6455 (or sent something MQTT over WebSocket does not allow)."""


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


class WebSocketServer:
    """One server-side WebSocket connection (see the module docstring)."""

    def __init__(self, *, max_frame: int = 16 * 1024 * 1024) -> None:
        self.max_frame = max_frame
        self.open = False
        self.closed = False
        self.subprotocol: str | None = None
        self.path = ""
        #: Bytes the driver must send before closing after an error.
        self.pending = b""
        self._buf = bytearray()

    def frame(self, payload: bytes) -> bytes:
        """MQTT bytes as one binary frame."""
        return frame(0x2, payload)

    def close_frame(self, code: int = 1000) -> bytes:
        return frame(0x8, code.to_bytes(2, "big"))

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Bytes from the socket -> ``(mqtt_bytes, bytes_to_send)``."""
        buf = self._buf
        buf += data
        reply = b""
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._refuse("request head too long")
                return b"", b""
            reply = self._handshake(bytes(buf[:end]))
            del buf[:end + 4]
        out: list[bytes] = []
        replies = [reply] if reply else []
        while len(buf) >= 2 and not self.closed:
            b0, b1 = buf[0], buf[1]
            if b0 & 0x70:
                raise WebSocketError("reserved bits set: no extension was negotiated")
            length = b1 & 0x7F
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    break
                length = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length = int.from_bytes(buf[2:10], "big")
                pos = 10
            if not b1 & 0x80:
                self.pending = self.close_frame(1002)
                raise WebSocketError("unmasked client frame (RFC 6455 5.1)")
            if length > self.max_frame:
                self.pending = self.close_frame(1009)
                raise WebSocketError(f"frame of {length} bytes exceeds {self.max_frame}")
            if len(buf) < pos + 4 + length:
                break
            mask = bytes(buf[pos:pos + 4])
            payload = _unmask(bytes(buf[pos + 4:pos + 4 + length]), mask)
            del buf[:pos + 4 + length]
            opcode = b0 & 0x0F
            if opcode in (0x0, 0x2):
                out.append(payload)
            elif opcode == 0x8:
                replies.append(frame(0x8, payload[:2]))
                self.closed = True
            elif opcode == 0x9:
                replies.append(frame(0xA, payload))
            elif opcode == 0xA:
                pass
            else:
                self.pending = self.close_frame(1003)
                raise WebSocketError(f"opcode {opcode:#x}: MQTT needs binary frames "
                                     "[MQTT-6.0.0-1]")
        return b"".join(out), b"".join(replies)

    def _refuse(self, why: str) -> None:
        self.pending = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        raise WebSocketError(why)

    def _handshake(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        request = lines[0].split(" ")
        if len(request) != 3 or request[0] != "GET":
            self._refuse("not a WebSocket upgrade request")
        self.path = request[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key", "")
        if "websocket" not in headers.get("upgrade", "").lower() or not key:
            self._refuse("missing Upgrade: websocket or Sec-WebSocket-Key")
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        reply = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n")
        for name in ("mqtt", "mqttv3.1"):
            if name in offered:
                self.subprotocol = name
                reply += f"Sec-WebSocket-Protocol: {name}\r\n"
                break
        self.open = True
        return (reply + "\r\n").encode()

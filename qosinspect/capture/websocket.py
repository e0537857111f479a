"""MQTT over WebSocket, seen passively: the HTTP upgrade, then a frame parser per direction.

Hard rules, and why:

* **Sans-I/O and incremental.** :class:`WebSocketFrameParser` takes chunks of any size (one byte
  at a time works) and returns what they complete; payload bytes are released as soon as they
  arrive, not when their frame ends, so an MQTT packet is attributed to the TCP segment that
  completed it even inside a large WebSocket frame.
* **A byte stream, not messages.** MQTT packets need not align with WebSocket frames or messages
  ([MQTT-6.0.0-2]), so binary and continuation payloads are passed through as one stream; message
  boundaries only matter for validation (a continuation outside a message, a new message inside
  one).
* **Client frames are masked, server frames are not** (RFC 6455 5.1); payloads are unmasked with
  whole-int XOR (no per-byte loop). A frame masked the wrong way is reported and still decoded.
* **Control frames** (close 8, ping 9, pong 10) may come between the fragments of a message; they
  are returned as :class:`WsControl` and never enter the byte stream. Text frames break
  [MQTT-6.0.0-1] and are reported, their bytes still passed on.
* **Malformed input is data, not an exception**: a :class:`WsProblem` is returned. When framing is
  lost (reserved opcode, compressed frame, a TCP gap) the direction stops: there is no marker to
  resynchronise on, and guessing would feed garbage to the MQTT decoder.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "WebSocketFrameParser",
    "WebSocketTunnel",
    "WsControl",
    "WsHandshake",
    "WsItem",
    "WsProblem",
    "looks_like_ws_upgrade",
    "parse_http_head",
    "unmask",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_DATA = frozenset({OP_CONT, OP_TEXT, OP_BINARY})


class WsControl(NamedTuple):
    """A control frame: ``opcode`` 8 (close), 9 (ping) or 10 (pong) and its unmasked payload."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame, if it carries one."""
        if self.opcode == OP_CLOSE and len(self.payload) >= 2:
            return int.from_bytes(self.payload[:2], "big")
        return None


class WsProblem(NamedTuple):
    """Something malformed; ``fatal`` when the direction can no longer be decoded."""

    detail: str
    fatal: bool = False


class WsHandshake(NamedTuple):
    """One side's HTTP upgrade head: the client's request or the server's response."""

    from_client: bool
    start_line: str
    subprotocol: str | None
    accepted: bool


WsItem = bytes | WsControl | WsProblem | WsHandshake


def unmask(data: bytes, key: bytes, phase: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` starting at key byte ``phase``."""
    n = len(data)
    if not n:
        return b""
    k = key[phase:] + key[:phase]
    stream = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little")


def parse_http_head(buf: bytes) -> tuple[int, str, dict[str, str]] | None:
    """``(length of the head incl. the blank line, start line, headers)`` or ``None`` if the
    blank line has not arrived yet. Header names are lower-cased; repeated ones are joined."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return end + 4, lines[0], headers


def _is_upgrade(headers: dict[str, str]) -> bool:
    return "websocket" in headers.get("upgrade", "").lower()


def looks_like_ws_upgrade(buf: bytes, *, require_mqtt: bool = True) -> bool | None:
    """Is ``buf`` (the first client bytes) an HTTP GET upgrading to WebSocket, offering an MQTT
    subprotocol when ``require_mqtt``? ``None`` while the head is incomplete."""
    if not buf.startswith(b"GET "[:len(buf)]):
        return False
    head = parse_http_head(buf)
    if head is None:
        return None
    _, _, headers = head
    if not _is_upgrade(headers):
        return False
    if not require_mqtt:
        return True
    protos = headers.get("sec-websocket-protocol", "").lower()
    return "mqtt" in protos


class WebSocketFrameParser:
    """Frames of one direction to payload bytes, control frames and problems.

    ``from_client`` says whether frames must be masked.
    """

    def __init__(self, from_client: bool) -> None:
        self.from_client = from_client
        self.broken = False
        self._head = bytearray()
        self._remaining = -1  # -1: reading a header
        self._opcode = 0
        self._fin = True
        self._key: bytes | None = None
        self._phase = 0
        self._ctrl = bytearray()
        self._in_message = False
        self.frames = 0
        self.pings = 0
        self.closed = False

    def _header_need(self) -> int:
        h = self._head
        if len(h) < 2:
            return 2
        n7 = h[1] & 0x7F
        return 2 + (2 if n7 == 126 else 8 if n7 == 127 else 0) + (4 if h[1] & 0x80 else 0)

    def feed(self, data: bytes) -> list[WsItem]:
        """Parse ``data``; returns payload chunks and other items in stream order."""
        out: list[WsItem] = []
        pos = 0
        n = len(data)
        while pos < n and not self.broken:
            if self._remaining < 0:
                need = self._header_need()
                while len(self._head) < need and pos < n:
                    take = min(need - len(self._head), n - pos)
                    self._head += data[pos:pos + take]
                    pos += take
                    need = self._header_need()
                if len(self._head) < need:
                    break
                self._start_frame(out)
                if self._remaining == 0:
                    self._end_frame(out)
                continue
            take = min(self._remaining, n - pos)
            chunk = data[pos:pos + take]
            pos += take
            if self._key is not None:
                chunk = unmask(chunk, self._key, self._phase)
                self._phase = (self._phase + take) & 3
            self._remaining -= take
            if self._opcode in _CONTROL:
                self._ctrl += chunk
            elif chunk:
                out.append(chunk)
            if self._remaining == 0:
                self._end_frame(out)
        return out

    def _start_frame(self, out: list[WsItem]) -> None:
        h = bytes(self._head)
        self._head.clear()
        b0, b1 = h[0], h[1]
        fin = bool(b0 & 0x80)
        op = b0 & 0x0F
        n7 = b1 & 0x7F
        p = 2
        if n7 == 126:
            length = int.from_bytes(h[2:4], "big")
            p = 4
        elif n7 == 127:
            length = int.from_bytes(h[2:10], "big")
            p = 10
            if length >> 63:
                return self._fatal(out, "64-bit payload length with the high bit set")
        else:
            length = n7
        masked = bool(b1 & 0x80)
        self._key = h[p:p + 4] if masked else None
        self._phase = 0
        self.frames += 1
        if b0 & 0x70:
            return self._fatal(out, "reserved bits set (a negotiated extension such as "
                               "permessage-deflate is not supported)")
        if op not in _CONTROL and op not in _DATA:
            return self._fatal(out, f"reserved opcode {op}")
        if masked != self.from_client:
            who = "client" if self.from_client else "server"
            out.append(WsProblem(f"{who} frame {'not ' if not masked else ''}masked"))
        if op in _CONTROL:
            if length > 125 or not fin:
                out.append(WsProblem(f"control frame (opcode {op}) fragmented or longer than "
                                     f"125 bytes ({length})"))
        elif op == OP_CONT:
            if not self._in_message:
                out.append(WsProblem("continuation frame outside a fragmented message"))
            self._in_message = not fin
        else:
            if self._in_message:
                out.append(WsProblem("new data frame inside a fragmented message"))
            if op == OP_TEXT:
                out.append(WsProblem("text frame: MQTT must use binary frames [MQTT-6.0.0-1]"))
            self._in_message = not fin
        self._opcode = op
        self._fin = fin
        self._remaining = length
        return None

    def _end_frame(self, out: list[WsItem]) -> None:
        if self._opcode in _CONTROL:
            out.append(WsControl(self._opcode, bytes(self._ctrl)))
            self._ctrl.clear()
            if self._opcode == OP_PING:
                self.pings += 1
            elif self._opcode == OP_CLOSE:
                self.closed = True
        self._remaining = -1

    def _fatal(self, out: list[WsItem], detail: str) -> None:
        self.broken = True
        out.append(WsProblem(detail, fatal=True))

    def gap(self) -> list[WsItem]:
        """Bytes of this direction were lost: framing cannot continue."""
        if self.broken:
            return []
        self.broken = True
        return [WsProblem("TCP gap inside a WebSocket stream: framing lost", fatal=True)]


class WebSocketTunnel:
    """One connection carrying WebSocket: the HTTP heads of both sides, then frames.

    ``feed(from_client, data)`` returns :data:`WsItem` values in order; payload ``bytes`` are the
    MQTT byte stream of that direction.
    """

    def __init__(self, max_head: int = 16384) -> None:
        self.max_head = max_head
        self._head = {True: bytearray(), False: bytearray()}
        self._parsers: dict[bool, WebSocketFrameParser] = {}
        self._dead = {True: False, False: False}
        self.subprotocol: str | None = None

    def parser(self, from_client: bool) -> WebSocketFrameParser | None:
        return self._parsers.get(from_client)

    def feed(self, from_client: bool, data: bytes) -> list[WsItem]:
        if self._dead[from_client]:
            return []
        parser = self._parsers.get(from_client)
        if parser is not None:
            return parser.feed(data)
        buf = self._head[from_client]
        buf += data
        head = parse_http_head(bytes(buf))
        if head is None:
            if len(buf) > self.max_head:
                self._dead[from_client] = True
                return [WsProblem("HTTP head too long or not HTTP", fatal=True)]
            return []
        size, start, headers = head
        rest = bytes(buf[size:])
        buf.clear()
        proto = headers.get("sec-websocket-protocol")
        if from_client:
            ok = start.startswith("GET ") and _is_upgrade(headers)
        else:
            ok = start.split(" ", 2)[1:2] == ["101"] and _is_upgrade(headers)
            if proto:
                self.subprotocol = proto
        out: list[WsItem] = [WsHandshake(from_client, start, proto, ok)]
        if not ok:
            self._dead[from_client] = True
            out.append(WsProblem(f"not a WebSocket upgrade: {start!r}", fatal=True))
            return out
        parser = self._parsers[from_client] = WebSocketFrameParser(from_client)
        if rest:
            out.extend(parser.feed(rest))
        return out

    def gap(self, from_client: bool) -> list[WsItem]:
        """Bytes were lost in one direction: it cannot be decoded further."""
        if self._dead[from_client]:
            return []
        self._dead[from_client] = True
        parser = self._parsers.get(from_client)
        if parser is not None:
            return parser.gap()
        return [WsProblem("TCP gap inside the HTTP upgrade", fatal=True)]

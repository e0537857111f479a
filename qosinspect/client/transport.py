"""Opening the byte stream a client speaks MQTT over: TCP, TLS, WebSocket (over TCP or TLS).

Every transport offers the same small interface (``read``, ``write``, ``drain``, ``finish``,
``close``, ``abort``), so the client driver never knows which one it has. ``read`` returns b"" at
the end of the stream. ``finish`` ends the client's direction only (TCP FIN after what is
buffered, a WebSocket close frame) while reading goes on: closing a socket that still has unread
bytes makes the kernel send RST, and a peer that takes the RST discards what it had not read yet
(the DISCONNECT just sent). TLS follows mosquitto_pub's options: a CA file (or the system's
CAs), an optional client certificate and key, and ``insecure`` to skip the host name check only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigError
from ..events import Endpoint
from .websocket import websocket_connect

__all__ = ["TRANSPORTS", "Stream", "TcpStream", "TransportOptions", "make_ssl_context",
           "open_stream"]

TRANSPORTS = ("tcp", "websocket")
_READ_SIZE = 65536


class Stream(Protocol):
    async def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def buffered(self) -> int: ...
    async def drain(self) -> None: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    async def wait_closed(self) -> None: ...


def make_ssl_context(ca_file: str | None = None, cert_file: str | None = None,
                     key_file: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context: trust ``ca_file`` (else the system CAs), present ``cert_file``.

    ``insecure`` skips the host name check (mosquitto's ``--insecure``); the certificate chain
    is still verified.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    elif key_file:
        raise ConfigError("a client key needs its certificate (--cert)", field="key_file")
    if insecure:
        ctx.check_hostname = False
    return ctx


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """Where and how to connect. ``tls`` is an SSLContext, True (system CAs) or None.

    ``split_writes`` makes a misbehaving client on purpose (issue 16's reproduction of Nagle's
    algorithm meeting a delayed ACK): TCP_NODELAY stays off and every write goes out in two
    ``send()`` calls, so the second half waits for the ACK of the first.
    """

    host: str = "127.0.0.1"
    port: int | None = None
    transport: str = "tcp"
    tls: ssl.SSLContext | None = None
    ws_path: str = "/mqtt"
    server_hostname: str | None = None
    split_writes: bool = False
    #: SO_RCVBUF in bytes (0: the system's): a small one, as on a small device, makes a client
    #: that stops reading close its TCP window quickly.
    rcvbuf: int = 0

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport {self.transport!r} is not one of "
                              f"{', '.join(TRANSPORTS)}", field="transport")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is not in 1..65535", field="port")

    @property
    def effective_port(self) -> int:
        """The port given, else the usual one: 1883 TCP, 8883 TLS, 8080 WebSocket, 8081 wss."""
        if self.port is not None:
            return self.port
        if self.transport == "websocket":
            return 8081 if self.tls is not None else 8080
        return 8883 if self.tls is not None else 1883

    @property
    def name(self) -> str:
        """``tcp``, ``tls`` or ``websocket``, as ConnectionInfo.transport names them."""
        if self.transport == "websocket":
            return "websocket"
        return "tls" if self.tls is not None else "tcp"


class TcpStream:
    """A StreamReader/StreamWriter pair (plain or TLS) behind the common interface."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 split_writes: bool = False) -> None:
        self.reader = reader
        self.writer = writer
        self.split_writes = split_writes

    async def read(self) -> bytes:
        return await self.reader.read(_READ_SIZE)

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            if self.split_writes and len(data) > 1:
                half = len(data) // 2   # each write is a send() when nothing is buffered
                self.writer.write(data[:half])
                self.writer.write(data[half:])
            else:
                self.writer.write(data)

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def finish(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()
        else:                       # TLS cannot half-close: close_notify and close
            self.writer.close()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def wait_closed(self) -> None:
        await self.writer.wait_closed()


async def open_stream(opts: TransportOptions) -> tuple[Stream, Endpoint, Endpoint]:
    """Connect; returns the stream, the local endpoint and the broker's endpoint.

    Raises OSError (refused, unreachable, lookup), ssl.SSLError, or WebSocketError.
    """
    port = opts.effective_port
    server_hostname = opts.server_hostname if opts.tls is not None else None
    if opts.tls is not None and server_hostname is None:
        server_hostname = opts.host
    reader, writer = await asyncio.open_connection(
        opts.host, port, ssl=opts.tls, server_hostname=server_hostname, limit=2 ** 20)
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # asyncio turns TCP_NODELAY on by itself: split_writes turns it off again
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if opts.split_writes else 1)
        if opts.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts.rcvbuf)
    peer = writer.get_extra_info("peername") or (opts.host, port)
    local = writer.get_extra_info("sockname") or ("?", 0)
    stream: Stream
    if opts.transport == "websocket":
        try:
            stream = await websocket_connect(reader, writer, host=opts.host, port=port,
                                             path=opts.ws_path)
        except BaseException:
            writer.close()
            raise
    else:
        stream = TcpStream(reader, writer, opts.split_writes)
    return (stream, Endpoint(str(local[0]), int(local[1])),
            Endpoint(str(peer[0]), int(peer[1])))


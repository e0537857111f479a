"""The asyncio front end of the broker: listeners, sockets, timers, the tap.

A thin driver around :class:`.engine.BrokerEngine`: each connection reads bytes, frames them with
a strict :class:`~qosinspect.mqtt.framing.StreamDecoder`, hands packets to the engine with
``time.time_ns()`` and writes what the engine put in the connections' outboxes. All protocol
decisions are the engine's; this module only deals with what sockets need:

- several listeners (TCP, TLS, WebSocket), IPv4 and IPv6, 127.0.0.1 by default;
- limits that keep a hostile client from hurting others: a CONNECT timeout, the maximum packet
  size (0x95), a maximum number of connections; a malformed packet closes only its connection,
  with MQTT 5 DISCONNECT carrying the reason code (0x81, 0x82, ...);
- backpressure: a publisher that fed a full subscriber queue is not read from until the queue
  drains; a connection that does not read its own socket is not read from either (``drain``);
  QoS 0 messages to a congested socket are dropped (and counted) by the engine;
- the tap: every packet sent or received as a :class:`~qosinspect.events.MqttPacketEvent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MQTTError, UnsupportedProtocolVersion
from ..events import ConnectionInfo, Endpoint, MqttPacketEvent
from ..mqtt.codec import encode
from ..mqtt.enums import Direction
from ..mqtt.framing import FramingAnomaly, StreamDecoder
from ..mqtt.packets import ConnAck, Packet, Publish
from ..mqtt.properties import NO_PROPERTIES
from .auth import Authenticator
from .engine import BrokerConfig, BrokerEngine, ClientConn
from .websocket import WebSocketStream, accept_websocket

__all__ = ["BrokerServer", "Listener", "ServerConfig", "Tap"]

Tap = Callable[[MqttPacketEvent], None]
log = logging.getLogger("qosinspect.broker")


@dataclass
class Listener:
    """One listening socket. ``port`` 0 picks a free port (see :attr:`BrokerServer.addresses`)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: ssl.SSLContext | None = None
    websocket: bool = False


@dataclass
class ServerConfig:
    listeners: list[Listener] = field(default_factory=lambda: [Listener()])
    engine: BrokerConfig = field(default_factory=BrokerConfig)
    max_connections: int = 10_000
    max_packet_size: int = 1024 * 1024
    connect_timeout: float = 10.0
    tick_interval: float = 0.25
    write_high_water: int = 512 * 1024


class _TcpStream:
    """StreamReader/StreamWriter behind the small interface a connection needs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


_Stream = _TcpStream | WebSocketStream


class BrokerServer:
    """Listeners plus the engine. ``async with BrokerServer(cfg) as server:`` starts and stops."""

    def __init__(self, config: ServerConfig | None = None, *, auth: Authenticator | None = None,
                 tap: Tap | None = None, verbose: bool = False) -> None:
        self.config = config or ServerConfig()
        self.engine = BrokerEngine(self.config.engine, auth)
        self.tap = tap
        self.verbose = verbose
        self._servers: list[asyncio.Server] = []
        self._streams: dict[int, tuple[_Stream, ConnectionInfo]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.addresses: list[tuple[str, int]] = []
        self.refused_connections = 0

    async def __aenter__(self) -> BrokerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        for listener in self.config.listeners:
            server = await asyncio.start_server(
                functools.partial(self._spawn, listener=listener), listener.host, listener.port,
                ssl=listener.tls, limit=2 ** 20, backlog=2048)
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self.addresses.append((host, port))
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    @property
    def port(self) -> int:
        """The port of the first listener (handy with port 0)."""
        return self.addresses[0][1]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        if self._ticker is not None:
            self._ticker.cancel()
        for stream, _info in list(self._streams.values()):
            stream.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            self.engine.tick(time.time_ns())
            self._flush()

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               listener: Listener) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer, listener))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one connection ---------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      listener: Listener) -> None:
        if len(self._streams) >= self.config.max_connections:
            self.refused_connections += 1
            writer.close()
            return
        stream: _Stream = _TcpStream(reader, writer)
        transport = "tls" if listener.tls is not None else "tcp"
        if listener.websocket:
            try:
                stream = await asyncio.wait_for(accept_websocket(reader, writer),
                                                self.config.connect_timeout)
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                writer.close()
                return
            transport = "websocket"
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        now = time.time_ns()
        conn = self.engine.open(now)
        info = ConnectionInfo(conn.conn_id, Endpoint(str(peer[0]), int(peer[1])),
                              Endpoint(str(local[0]), int(local[1])), transport)
        self._streams[conn.conn_id] = (stream, info)
        decoder = StreamDecoder(4, max_packet_size=self.config.max_packet_size)
        try:
            await self._read_loop(conn, stream, info, decoder)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            self.engine.connection_lost(conn, time.time_ns())
            self._flush()
            self._streams.pop(conn.conn_id, None)
            stream.close()

    async def _read_loop(self, conn: ClientConn, stream: _Stream, info: ConnectionInfo,
                         decoder: StreamDecoder) -> None:
        engine = self.engine
        tap = self.tap
        deadline = time.monotonic() + self.config.connect_timeout
        while not conn.closed:
            if conn.connected:
                data = await stream.read()
            else:
                data = await asyncio.wait_for(stream.read(), max(0.0, deadline - time.monotonic()))
            if not data:
                return
            now = time.time_ns()
            try:
                packets = decoder.feed(data)
            except MQTTError as exc:
                self._malformed(conn, stream, exc, now)
                return
            for packet, size in zip(packets, decoder.sizes, strict=True):
                assert not isinstance(packet, FramingAnomaly)   # strict mode raises instead
                if tap is not None:
                    tap(MqttPacketEvent(now, info, Direction.C2B, packet, size,
                                        version=decoder.version))
                if self.verbose:
                    log.info("%s c2b %r", info.client, packet)
                engine.receive(conn, packet, now)
                if conn.closed:
                    break
            self._flush()
            if stream.buffered() > self.config.write_high_water:
                await stream.drain()             # a peer that does not read is not read from
            while not conn.closed and engine.is_blocked(conn):
                await asyncio.sleep(0.002)       # backpressure: its subscribers are full

    def _malformed(self, conn: ClientConn, stream: _Stream, exc: MQTTError, now: int) -> None:
        """Close with the error's reason code: CONNACK before CONNECT, else DISCONNECT (v5)."""
        if self.verbose:
            log.info("conn %d: %s", conn.conn_id, exc)
        if not conn.connected:
            if isinstance(exc, UnsupportedProtocolVersion):
                code = exc.reason_code
                with contextlib.suppress(Exception):
                    stream.write(encode(ConnAck(False, code), 5 if code >= 0x80 else 4))
            self.engine.close(conn, None, now)
        else:
            self.engine.close(conn, exc.reason_code, now)
        self._flush()

    def _flush(self) -> None:
        """Write every outbox the engine filled; close the connections it ended."""
        tap = self.tap
        high = self.config.write_high_water
        for conn in self.engine.take_output():
            entry = self._streams.get(conn.conn_id)
            if entry is None:
                conn.outbox.clear()
                continue
            stream, info = entry
            version = conn.version
            if conn.outbox:
                now = time.time_ns()
                chunks: list[bytes] = []
                for packet in conn.outbox:
                    data = _encode_for(packet, version)
                    chunks.append(data)
                    if tap is not None:
                        tap(MqttPacketEvent(now, info, Direction.B2C, packet, len(data),
                                            version=version))
                    if self.verbose:
                        log.info("%s b2c %r", info.client, packet)
                conn.outbox.clear()
                with contextlib.suppress(Exception):
                    stream.write(b"".join(chunks))
            conn.congested = stream.buffered() > high
            if conn.closed:
                stream.close()


def _encode_for(packet: Packet, version: int) -> bytes:
    if version < 5 and isinstance(packet, Publish) and packet.properties:
        packet = packet._replace(properties=NO_PROPERTIES)
    return encode(packet, version)

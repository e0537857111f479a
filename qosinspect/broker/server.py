"""The asyncio front end of the broker: listeners, sockets, timers, the tap.

A thin driver around :class:`.engine.BrokerEngine`. Each connection is an
:class:`asyncio.Protocol` (no task per connection, no stream objects: the callbacks are the
hot path): bytes are framed by a strict :class:`~qosinspect.mqtt.framing.StreamDecoder`, packets
go to the engine with ``time.time_ns()``, and what the engine put in the connections' outboxes
is encoded and written once per batch. All protocol decisions are the engine's; this module
only deals with what sockets need:

- several listeners (TCP, TLS, WebSocket, WebSocket over TLS), IPv4 and IPv6, 127.0.0.1 by
  default;
- limits that keep a hostile client from hurting others: the CONNECT timeout (engine), the
  maximum packet size (0x95), a maximum number of connections; a malformed packet closes only
  its connection, with an MQTT 5 DISCONNECT carrying the reason code (0x81, 0x82, ...) or a
  CONNACK refusal before CONNECT was accepted;
- backpressure: a publisher that fed a full subscriber queue is not read from until the queue
  drains (``pause_reading``); a connection that does not read its own socket (write buffer
  above ``write_high_water``) is not read from either, and QoS 0 messages to it are dropped and
  counted by the engine, so its buffer stays under the high-water mark plus what one read of a
  publisher (at most 256 KiB) routes to it;
- persistence: with a :class:`~.store.SqliteStore`, changes are committed before any packet of
  the batch is written (an acknowledgement never precedes the stored message);
- the tap.

The tap
-------
``tap`` is a callable that receives, synchronously and in order on the broker's event loop:

- :class:`~qosinspect.events.ConnectionOpened` when a client's TCP connection is accepted;
- :class:`~qosinspect.events.MqttPacketEvent` for every packet received (``direction`` c2b,
  after decoding, before the engine acts) and sent (b2c, when written), with ``frame=0``,
  ``ts_ns`` from ``time.time_ns()``, ``wire_len`` the packet's size and the connection's
  :class:`~qosinspect.events.ConnectionInfo` (``conn_id`` numbers connections from 0);
- :class:`~qosinspect.events.ConnectionClosed` when it ends (``how`` ``fin`` or ``rst``,
  ``closed_by`` the side that ended it when known).

These are the types the capture decoder produces, so a run can be analysed without a pcap. The
callback must be quick and must not raise; ``events.append`` (a list) or
``queue.put_nowait`` (an unbounded :class:`asyncio.Queue` on the same loop) are typical.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MQTTError, UnsupportedProtocolVersion
from ..events import (
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    Event,
    MqttPacketEvent,
)
from ..mqtt.enums import Direction, DisconnectReason
from ..mqtt.framing import StreamDecoder
from ..mqtt.packets import Connect, Packet
from .auth import Authenticator
from .engine import BrokerConfig, BrokerEngine, BrokerStats, ClientConn
from .outgoing import encode_out
from .store import SqliteStore
from .sysinfo import SysTree, heap_bytes, package_version
from .websocket import WebSocketError, WebSocketServer

__all__ = ["BrokerServer", "Listener", "ServerConfig", "Tap", "loggable", "tls_context"]

Tap = Callable[[Event], None]
log = logging.getLogger("qosinspect.broker")
_C2B = Direction.C2B
_CONNECT_FIRST = 0x10       # CONNECT's first byte (its flags are reserved as 0) [MQTT-3.1.0-1]
_B2C = Direction.B2C


@dataclass
class Listener:
    """One listening socket. ``port`` 0 picks a free port (see :attr:`BrokerServer.addresses`).

    ``tls`` makes it a TLS listener; ``websocket`` speaks MQTT over WebSocket (on TLS too).
    ``use_identity_as_username`` takes the client certificate's common name as the user name
    (as mosquitto's option of that name), so no password is needed.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    tls: ssl.SSLContext | None = None
    websocket: bool = False
    use_identity_as_username: bool = False

    @property
    def transport(self) -> str:
        return "websocket" if self.websocket else ("tls" if self.tls is not None else "tcp")


@dataclass
class ServerConfig:
    listeners: list[Listener] = field(default_factory=lambda: [Listener()])
    engine: BrokerConfig = field(default_factory=BrokerConfig)
    max_connections: int = 10_000
    tick_interval: float = 0.25
    write_high_water: int = 256 * 1024
    #: SQLite file for sessions, queues and retained messages (None: in memory only).
    persistence: str | None = None


def tls_context(certfile: str, keyfile: str | None = None, *, cafile: str | None = None,
                require_certificate: bool = False) -> ssl.SSLContext:
    """A server TLS context; with ``cafile``, client certificates signed by it are checked."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_certificate else ssl.CERT_OPTIONAL
    return ctx


# -- one connection -----------------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """The transport side of one client connection."""

    def __init__(self, server: BrokerServer, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.conn: ClientConn | None = None
        self.info: ConnectionInfo | None = None
        self.decoder = StreamDecoder(4, max_packet_size=server.config.engine.max_packet_size)
        # a frame may hold several packets, but never needs to be much larger than one
        self.ws = WebSocketServer(max_frame=server.config.engine.max_packet_size + 4096) \
            if listener.websocket else None
        self.pending: list[tuple[Packet, int]] = []
        self.first_bytes = True
        self.reading = True
        self.write_paused = False
        self.closed_by: Direction | None = None

    # asyncio callbacks

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look like one
        transport: asyncio.Transport = base  # type: ignore[assignment]
        self.transport = transport
        server = self.server
        if len(server.connections) >= server.config.max_connections:
            server.refused_connections += 1
            transport.abort()
            return
        now = time.time_ns()
        conn = self.conn = server.engine.open(now)
        conn.driver = self
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        self.info = ConnectionInfo(conn.conn_id, Endpoint(str(peer[0]), int(peer[1])),
                                   Endpoint(str(local[0]), int(local[1])),
                                   self.listener.transport)
        if self.listener.use_identity_as_username:
            conn.cert_username = _cert_common_name(transport)
        transport.set_write_buffer_limits(high=server.config.write_high_water)
        server.connections[conn.conn_id] = self
        if server.tap is not None:
            server.tap(ConnectionOpened(now, self.info))
        if server.verbose:
            log.info("conn %d: new connection from %s (%s)", conn.conn_id, self.info.client,
                     self.info.transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        server = self.server
        if self.ws is not None:
            try:
                data, reply = self.ws.feed(data)
            except WebSocketError as exc:
                self._abort_ws(str(exc))
                return
            if reply and self.transport is not None:
                self.transport.write(reply)
            if self.ws.closed:
                server.engine.connection_lost(conn, time.time_ns())
                self._close_transport()
                server.flush()
                return
            if not data:
                return
        now = time.time_ns()
        if self.first_bytes:
            self.first_bytes = False
            if data[0] != _CONNECT_FIRST:
                # HTTP or any other protocol: no MQTT client starts otherwise [MQTT-3.1.0-1].
                # Nothing to answer in a protocol it does not speak: close now, not at the
                # CONNECT timeout (a WebSocket listener is where HTTP is answered).
                if server.verbose:
                    log.info("conn %d: not MQTT (first byte 0x%02x): closed", conn.conn_id,
                             data[0])
                server.engine.close(conn, None, now)
                server.flush()
                return
        try:
            packets = self.decoder.feed(data)
        except MQTTError as exc:
            server.malformed(self, exc, now)
            return
        except Exception:                 # a bug of ours: this client goes, the others stay
            server.internal_error(self, "decoding", now)
            return
        items: list[tuple[Packet, int]] = list(zip(packets, self.decoder.sizes,  # type: ignore[arg-type]
                                                   strict=True))
        if self.pending:                  # still paused on an earlier batch: keep the order
            self.pending.extend(items)
            self.update_reading()
            return
        self._process(items, now)

    def _process(self, items: list[tuple[Packet, int]], now: int, *,
                 final: bool = False) -> None:
        server = self.server
        conn = self.conn
        assert conn is not None and self.info is not None
        engine = server.engine
        tap = server.tap
        info = self.info
        version = self.decoder.version
        verbose = server.verbose
        for i, (packet, size) in enumerate(items):
            if tap is not None:
                tap(MqttPacketEvent(now, info, _C2B, packet, size, version=version))
            if verbose:
                log.info("%s c2b %r", info.client, loggable(packet))
            try:
                engine.receive(conn, packet, now)
            except Exception:             # a bug of ours: this client goes, the others stay
                server.internal_error(self, f"handling {type(packet).__name__}", now)
                return
            if conn.closed:
                break
            if conn.blocked_on and i + 1 < len(items) and not final:
                self.pending = items[i + 1:]          # resumed when the queue drains
                break
        server.flush()
        self.update_reading()

    def update_reading(self) -> None:
        conn = self.conn
        transport = self.transport
        if conn is None or transport is None or conn.closed:
            return
        want = not (conn.blocked_on or self.pending or self.write_paused)
        if want != self.reading:
            self.reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def resume_blocked(self) -> None:
        """The subscribers this publisher fed have drained: finish its batch, read again."""
        conn = self.conn
        if conn is None or conn.closed or conn.blocked_on:
            return
        if self.pending:
            items, self.pending = self.pending, []
            self._process(items, time.time_ns())
        else:
            self.update_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.conn is not None:
            self.conn.congested = True
        self.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.conn is not None:
            self.conn.congested = False
        self.update_reading()
        self.server.schedule_pump()

    def eof_received(self) -> bool | None:
        return None          # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is None:
            return
        server = self.server
        now = time.time_ns()
        if self.pending and not conn.closed:
            # what the client sent before it went (a DISCONNECT, say) still counts
            items, self.pending = self.pending, []
            self._process(items, now, final=True)
        server.engine.connection_lost(conn, now)
        server.connections.pop(conn.conn_id, None)
        if server.tap is not None and self.info is not None:
            closed_by = self.closed_by or _C2B
            server.tap(ConnectionClosed(now, self.info, "fin" if exc is None else "rst",
                                        closed_by))
        if server.verbose:
            log.info("conn %d: closed (%s)", conn.conn_id, exc or "fin")
        server.flush()

    # helpers

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(self.ws.frame(data) if self.ws is not None else data)

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.closed_by is None:
                client = self.conn is not None and self.conn.client_disconnected
                self.closed_by = _C2B if client else _B2C
            if self.ws is not None and self.ws.open and not self.ws.closed:
                transport.write(self.ws.close_frame())
            transport.close()

    def _abort_ws(self, why: str) -> None:
        assert self.ws is not None and self.conn is not None
        if self.server.verbose:
            log.info("conn %d: WebSocket error: %s", self.conn.conn_id, why)
        if self.transport is not None and self.ws.pending:
            self.transport.write(self.ws.pending)
        self.server.engine.close(self.conn, None, time.time_ns())
        self.closed_by = _B2C
        if self.transport is not None:
            self.transport.close()
        self.server.flush()


def _cert_common_name(transport: asyncio.BaseTransport) -> str | None:
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


# -- the server ---------------------------------------------------------------------------------

class BrokerServer:
    """Listeners plus the engine: ``async with BrokerServer(cfg) as server:`` starts and stops.

    Works inside any running asyncio loop (a Jupyter cell included)::

        async with BrokerServer(ServerConfig([Listener("127.0.0.1", 0)])) as broker:
            print(broker.port)

    :class:`~.thread.BrokerThread` runs one on its own loop in a thread, for blocking code.
    Without ``auth`` anyone may connect (a broker on 127.0.0.1 for a notebook or a test); the
    ``qosinspect broker`` command is the other way round: anonymous clients are refused unless
    ``--allow-anonymous``.
    """

    def __init__(self, config: ServerConfig | None = None, *, auth: Authenticator | None = None,
                 tap: Tap | None = None, verbose: bool = False) -> None:
        self.config = config or ServerConfig()
        self.engine = BrokerEngine(self.config.engine, auth)
        self.tap = tap
        self.verbose = verbose
        self.store: SqliteStore | None = None
        self.connections: dict[int, _Connection] = {}
        #: ``(host, port)`` of every listening socket, in listener order.
        self.addresses: list[tuple[str, int]] = []
        #: The same with the listener each belongs to.
        self.bound: list[tuple[str, int, Listener]] = []
        self.refused_connections = 0
        #: Exceptions caught while serving a connection (bugs: each closed only that one).
        self.internal_errors = 0
        self._servers: list[asyncio.Server] = []
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._topics: dict[str, bytes] = {}
        self._pump_handle: asyncio.Handle | None = None
        self._sys: SysTree | None = None

    @property
    def stats(self) -> BrokerStats:
        return self.engine.stats

    async def __aenter__(self) -> BrokerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store (if any) and every listener; return once all are listening."""
        loop = self._loop = asyncio.get_running_loop()
        if self.config.persistence:
            Path(self.config.persistence).parent.mkdir(parents=True, exist_ok=True)
            self.store = SqliteStore(self.config.persistence)
            self.store.load(self.engine, time.time_ns())
        try:
            for listener in self.config.listeners:
                server = await loop.create_server(
                    lambda listener=listener: _Connection(self, listener),
                    listener.host, listener.port, ssl=listener.tls, backlog=4096,
                    reuse_address=True)
                self._servers.append(server)
                for sock in server.sockets:
                    if sock.family in (socket.AF_INET, socket.AF_INET6):
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    host, port = sock.getsockname()[:2]
                    self.addresses.append((host, port))
                    self.bound.append((host, port, listener))
        except BaseException:
            await self.close()
            raise
        self._sys = SysTree(package_version(), time.time_ns())
        self._ticker = loop.create_task(self._tick_loop())

    @property
    def port(self) -> int:
        """The port of the first listener (handy with port 0)."""
        return self.addresses[0][1]

    def describe(self) -> str:
        """``127.0.0.1:1883 (tcp), [::1]:8883 (tls)``: where it listens."""
        return ", ".join((f"[{h}]:{p}" if ":" in h else f"{h}:{p}") + f" ({li.transport})"
                         for h, p, li in self.bound)

    async def close(self) -> None:
        """Stop listening, tell MQTT 5 clients (0x8B), close every connection, commit."""
        for server in self._servers:
            server.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.engine.shutdown(time.time_ns())
        self.flush()
        for proto in list(self.connections.values()):
            if proto.transport is not None:
                proto.transport.close()
        for _ in range(50):
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        for proto in list(self.connections.values()):
            if proto.transport is not None:
                proto.transport.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        if self.store is not None:
            self.store.commit(self.engine)
            self.store.close()
            self.store = None

    async def _tick_loop(self) -> None:
        next_sys = 0
        while True:
            now = time.time_ns()
            interval = self.config.engine.sys_interval
            if interval > 0 and now >= next_sys and self._sys is not None:
                self.engine.publish_sys(self._sys.values(self.engine, now, heap_bytes()), now)
                next_sys = now + int(interval * 1e9)
                self.flush()
            await asyncio.sleep(self.config.tick_interval)
            self.engine.tick(time.time_ns())
            self.flush()

    def schedule_pump(self) -> None:
        """Send more pending retained messages on the next turn of the loop (once)."""
        if self._pump_handle is None and self._loop is not None and \
                self.engine.retained_pending:
            self._pump_handle = self._loop.call_soon(self._pump_retained)

    def _pump_retained(self) -> None:
        self._pump_handle = None
        more = self.engine.pump_retained(time.time_ns())
        self.flush(pump=False)
        if more:
            self.schedule_pump()

    def internal_error(self, proto: _Connection, what: str, now: int) -> None:
        """An unexpected exception while serving one connection: log it, count it, close
        that connection (0x83, implementation specific error); the broker carries on."""
        conn = proto.conn
        assert conn is not None
        self.internal_errors += 1
        log.exception("conn %d: internal error while %s; closing the connection",
                      conn.conn_id, what)
        with contextlib.suppress(Exception):
            self.engine.close(conn, 0x83 if conn.connected else None, now)
        conn.closed = True
        with contextlib.suppress(Exception):
            self.flush()
        proto._close_transport()

    def malformed(self, proto: _Connection, exc: MQTTError, now: int) -> None:
        """Close with the error's reason code: CONNACK before CONNECT, else DISCONNECT (v5)."""
        conn = proto.conn
        assert conn is not None
        if self.verbose:
            log.info("conn %d: %s", conn.conn_id, exc)
        if not conn.connected and isinstance(exc, UnsupportedProtocolVersion):
            conn.version = 5 if exc.reason_code >= 0x80 else 4
            self.engine.refuse(conn, exc.reason_code)         # [MQTT-3.1.2-2]
        else:
            self.engine.close(conn, _disconnect_reason(exc) if conn.connected else None, now)
        self.flush()

    def flush(self, *, pump: bool = True) -> None:
        """Commit to the store, then write every outbox; close the connections that ended.
        With ``pump``, pending retained messages get their next slice soon after."""
        engine = self.engine
        if self.store is not None:
            self.store.commit(engine)
        tap = self.tap
        verbose = self.verbose
        topics = self._topics
        for conn in engine.take_output():
            proto: _Connection | None = conn.driver
            if proto is None or proto.transport is None:
                conn.outbox.clear()
                continue
            if conn.outbox:
                version = conn.version
                outbox = conn.outbox
                conn.outbox = []
                if tap is None and not verbose:
                    data = b"".join([encode_out(p, version, topics) for p in outbox])
                else:
                    now = time.time_ns()
                    info = proto.info
                    assert info is not None
                    chunks = []
                    for packet in outbox:
                        raw = encode_out(packet, version, topics)
                        chunks.append(raw)
                        if tap is not None:
                            tap(MqttPacketEvent(now, info, _B2C, packet, len(raw),
                                                version=version))
                        if verbose:
                            log.info("%s b2c %r", info.client, packet)
                    data = b"".join(chunks)
                proto.write(data)
            if conn.closed:
                proto._close_transport()
        unblocked = engine.take_unblocked()
        if unblocked and self._loop is not None:
            for conn in unblocked:
                if conn.driver is not None:
                    self._loop.call_soon(conn.driver.resume_blocked)
        if pump and engine.retained_pending:
            self.schedule_pump()


def loggable(packet: Packet) -> Packet:
    """``packet`` as it may appear in a log: a CONNECT's password never does, right or wrong
    (nor AUTH data, which may carry credentials)."""
    if type(packet) is Connect and packet.password is not None:
        return packet._replace(password=b"<hidden>")
    return packet


def _disconnect_reason(exc: MQTTError) -> int:
    """The DISCONNECT reason code for a decoding error of a connected client: the error's own
    when DISCONNECT may carry it [MQTT-3.14.2-1], else a protocol error. An unsupported
    protocol version (0x84 or 0x01, CONNACK codes) can only come from a second CONNECT, a
    protocol error [MQTT-3.1.0-2]."""
    code = exc.reason_code
    return code if code in _DISCONNECT_CODES else int(DisconnectReason.PROTOCOL_ERROR)


_DISCONNECT_CODES = frozenset(int(r) for r in DisconnectReason)

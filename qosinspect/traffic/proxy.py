"""The fault proxy: an asyncio TCP relay between the clients and the broker that breaks things
on purpose, one MQTT packet at a time, without root.

Every client of a run connects to the proxy's front port(s); for each connection the proxy opens
one to the broker and relays both directions. Each direction's bytes are framed into MQTT packets
with the codec's strict :class:`~qosinspect.mqtt.framing.StreamDecoder` (the version is learnt
from CONNECT and shared by both directions), and every packet goes through the
:class:`~.faults.PacketRules` verdict: forward, drop, send twice, hold, delay, or cut the
connection after it. Time-driven faults come from the run: :meth:`FaultProxy.cut`,
:meth:`FaultProxy.blackhole`, :meth:`FaultProxy.refuse`.

How the relay keeps TCP's promises, and why:

- Order: each direction has one FIFO queue and one writer; a delayed packet delays the ones
  behind it (TCP never reorders). Only held acknowledgements leave the queue, and they rejoin it
  in their order when the hold ends.
- A black hole stops both writers; bytes and even a FIN read meanwhile are delivered when it
  ends, as TCP would deliver them late. A peer that gives up first (keep-alive) closes.
- A cut closes both sides with FIN (discarding what was queued) or RST (``SO_LINGER`` 0).
  ``refuse`` closes a front listener, so reconnection attempts meet a closed port, as when a
  host is unreachable; each client that a cut targets gets its own front port for this.
- Bytes that do not frame as MQTT (a broken peer) switch that direction to a plain relay.
  Over WebSocket the proxy relays raw chunks (faults that need packets are refused by the
  scenario check) and decodes the tunnel only for the tap.

The proxy observes the client side of every connection: its tap gets a
:class:`~qosinspect.events.MqttPacketEvent` per packet read from a client (when read) and per
packet written to it (when written), with connection open/close events, and its recorder (a
:class:`~.pcapng.PcapngRecorder`) gets the raw chunks: that is the synthetic capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..capture.websocket import WebSocketTunnel
from ..errors import MQTTError, QosinspectError
from ..events import (
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    Event,
    MqttPacketEvent,
)
from ..mqtt.enums import Direction
from ..mqtt.framing import ConnectionDecoder, FramingAnomaly
from ..mqtt.packets import Connect, Packet
from .faults import NS, FaultRecord, PacketRules
from .pcapng import PcapngRecorder
from .scenario import FaultSpec

__all__ = ["FaultProxy", "ProxyTap"]

ProxyTap = Callable[[Event], None]
C2B, B2C = Direction.C2B, Direction.B2C
_READ = 65536


@dataclass(slots=True)
class _Item:
    """One thing for a writer: bytes (with the packets they hold, for the tap), or an end."""

    release_ns: int
    data: bytes = b""
    packets: list[tuple[Packet, int]] = field(default_factory=list)
    end: str = ""            # "", "eof" (FIN), "rst"


class _Framer:
    """Cuts one direction into pieces to forward, each with the packets it completes."""

    def __init__(self, decoder: ConnectionDecoder, direction: Direction,
                 tunnel: WebSocketTunnel | None) -> None:
        self.decoder = decoder
        self.direction = direction
        self.tunnel = tunnel
        self.raw = False
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, list[tuple[Packet, int]]]]:
        if self.tunnel is not None:
            return [(chunk, self._tunnel_packets(chunk))]
        if self.raw:
            return [(chunk, [])]
        self._buf += chunk
        try:
            results = self.decoder.feed(self.direction, chunk)
        except MQTTError:
            self.raw = True
            data, self._buf = self._buf, b""
            return [(data, [])]
        sizes = self.decoder.stream(self.direction).sizes
        out: list[tuple[bytes, list[tuple[Packet, int]]]] = []
        pos = 0
        for packet, size in zip((r for r in results if not isinstance(r, FramingAnomaly)),
                                sizes, strict=False):
            out.append((self._buf[pos:pos + size], [(packet, size)]))
            pos += size
        self._buf = self._buf[pos:]
        return out

    def _tunnel_packets(self, chunk: bytes) -> list[tuple[Packet, int]]:
        assert self.tunnel is not None
        found: list[tuple[Packet, int]] = []
        for item in self.tunnel.feed(self.direction is C2B, chunk):
            if isinstance(item, bytes):
                results = self.decoder.feed(self.direction, item)
                sizes = iter(self.decoder.stream(self.direction).sizes)
                found.extend((r, next(sizes)) for r in results
                             if not isinstance(r, FramingAnomaly))
        return found


class _Conn:
    """One relayed connection: the client side, the broker side, two queues, two writers."""

    def __init__(self, proxy: FaultProxy, info: ConnectionInfo, creader: asyncio.StreamReader,
                 cwriter: asyncio.StreamWriter, websocket: bool) -> None:
        self.proxy = proxy
        self.info = info
        self.creader = creader
        self.cwriter = cwriter
        self.breader: asyncio.StreamReader | None = None
        self.bwriter: asyncio.StreamWriter | None = None
        self.client_id = ""
        decoder = ConnectionDecoder(4, lenient=websocket)
        tunnel = WebSocketTunnel() if websocket else None
        self.framers = {C2B: _Framer(decoder, C2B, tunnel), B2C: _Framer(decoder, B2C, tunnel)}
        self.decoder = decoder
        self.queues: dict[Direction, deque[_Item]] = {C2B: deque(), B2C: deque()}
        self.wake = {C2B: asyncio.Event(), B2C: asyncio.Event()}
        self.last_release = {C2B: 0, B2C: 0}
        self.held: dict[Direction, deque[tuple[int, int, _Item]]] = {C2B: deque(),
                                                                      B2C: deque()}
        self.rec_key: int | None = None
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def blackhole_until(self) -> int:
        return self.proxy.blackholes.get(self.client_id, 0)

    def put(self, direction: Direction, item: _Item) -> None:
        self.queues[direction].append(item)
        self.wake[direction].set()


class FaultProxy:
    """Relays clients to ``upstream`` (host, port), applying ``rules``; see the module doc."""

    def __init__(self, upstream: tuple[str, int], rules: PacketRules, *,
                 host: str = "127.0.0.1", websocket: bool = False, tap: ProxyTap | None = None,
                 recorder: PcapngRecorder | None = None,
                 clock: Callable[[], int] = time.time_ns,
                 socket_factory: Callable[[int], socket.socket] | None = None) -> None:
        self.upstream = upstream
        self.rules = rules
        self.host = host
        self.websocket = websocket
        self.tap = tap
        self.recorder = recorder
        self.clock = clock
        #: Makes the listening socket for a port (a network namespace's, see :mod:`.netns`).
        self.socket_factory = socket_factory
        self.blackholes: dict[str, int] = {}
        self.records = rules.records
        self.connections = 0
        self.upstream_failures = 0
        self._servers: dict[int, asyncio.Server] = {}
        self._port_of: dict[str, int] = {}
        self._default_port: int | None = None
        self._conns: set[_Conn] = set()
        self._conn_ids = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- listeners --------------------------------------------------------------------------

    async def listen(self, port: int = 0, clients: tuple[str, ...] = ()) -> int:
        """Open a front port (0: any free one) and return it; ``clients`` are the client ids
        meant to use it (so :meth:`refuse` knows which port to close for them)."""
        server = await self._start_server(port)
        actual = int(server.sockets[0].getsockname()[1])
        self._servers[actual] = server
        for cid in clients:
            self._port_of[cid] = actual
        if not clients and self._default_port is None:
            self._default_port = actual
        return actual

    async def _start_server(self, port: int) -> asyncio.Server:
        if self.socket_factory is not None:
            return await asyncio.start_server(self._accept, sock=self.socket_factory(port))
        return await asyncio.start_server(self._accept, self.host, port, reuse_address=True)

    @property
    def ports(self) -> list[int]:
        return sorted(set(self._servers) | set(self._port_of.values()))

    def port_for(self, client_id: str) -> int:
        """The front port a client must connect to."""
        port = self._port_of.get(client_id) or self._default_port
        if port is None:
            raise RuntimeError("the proxy has no front port: call listen() first")
        return port

    async def drain(self, timeout: float) -> bool:
        """Wait until every relayed connection has ended (its client closed it and the proxy
        read and relayed all it sent: a DISCONNECT is in the capture), for at most
        ``timeout`` seconds; returns whether they all did. :meth:`close` aborts the rest."""
        deadline = time.monotonic() + timeout
        while any(not conn.closed for conn in self._conns):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        self._closing = True
        for server in self._servers.values():
            server.close()
        for conn in list(self._conns):
            self._abort(conn, "fin", B2C, record=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    # -- time-driven faults -----------------------------------------------------------------

    def cut(self, spec: FaultSpec, how: str | None = None) -> int:
        """Close every connection of the fault's clients now; returns how many."""
        how = how or spec.how
        n = 0
        now = self.clock()
        for conn in list(self._conns):
            if conn.client_id in spec.clients and not conn.closed:
                self.rules.record(now, spec, f"cut_{how}", client_id=conn.client_id,
                                  detail=f"conn {conn.info.conn_id}")
                self._abort(conn, how, B2C, record=True)
                n += 1
        if spec.down_for > 0:
            self.refuse(spec, spec.down_for)
        return n

    def blackhole(self, spec: FaultSpec, duration: float) -> None:
        now = self.clock()
        until = now + int(duration * NS)
        for cid in spec.clients:
            self.blackholes[cid] = max(self.blackholes.get(cid, 0), until)
            self.rules.record(now, spec, "blackhole", client_id=cid,
                              detail=f"{duration:g} s")

    def refuse(self, spec: FaultSpec | None, seconds: float, clients: tuple[str, ...] = ()
               ) -> None:
        """Close the front ports of these clients (all ports when none is dedicated) for
        ``seconds``: connection attempts meet a closed port meanwhile."""
        wanted = clients or (spec.clients if spec is not None else ())
        ports = {self._port_of[c] for c in wanted if c in self._port_of} or set(self._servers)
        now = self.clock()
        for port in ports:
            server = self._servers.pop(port, None)
            if server is not None:
                server.close()
                if spec is not None:
                    self.rules.record(now, spec, "refuse", detail=f"port {port} for "
                                      f"{seconds:g} s")
                self._spawn(self._reopen(port, seconds))

    async def _reopen(self, port: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        for attempt in range(50):
            if self._closing:
                return
            try:
                server = await self._start_server(port)
            except (OSError, QosinspectError):
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            self._servers[port] = server
            return

    # -- connections ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._serve(reader, writer))

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        now = self.clock()
        peer = cwriter.get_extra_info("peername") or ("?", 0)
        local = cwriter.get_extra_info("sockname") or ("?", 0)
        info = ConnectionInfo(next(self._conn_ids), Endpoint(str(peer[0]), int(peer[1])),
                              Endpoint(str(local[0]), int(local[1])),
                              "websocket" if self.websocket else "tcp")
        conn = _Conn(self, info, creader, cwriter, self.websocket)
        self.connections += 1
        self._conns.add(conn)
        if self.recorder is not None:
            conn.rec_key = self.recorder.opened(now, info.client, info.broker)
        if self.tap is not None:
            self.tap(ConnectionOpened(now, info))
        try:
            conn.breader, conn.bwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.upstream_failures += 1
            self._abort(conn, "rst", B2C, record=True)
            self._conns.discard(conn)
            return
        loop = asyncio.get_running_loop()
        conn.tasks = [loop.create_task(self._pump(conn, C2B)),
                      loop.create_task(self._pump(conn, B2C)),
                      loop.create_task(self._writer(conn, C2B)),
                      loop.create_task(self._writer(conn, B2C))]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._finish(conn)

    async def _pump(self, conn: _Conn, direction: Direction) -> None:
        """Read one side, frame, judge each packet, queue it for the other side's writer."""
        reader = conn.creader if direction is C2B else conn.breader
        assert reader is not None
        framer = conn.framers[direction]
        while True:
            try:
                chunk = await reader.read(_READ)
            except (ConnectionResetError, OSError):
                conn.put(direction, _Item(self.clock(), end="rst"))
                return
            now = self.clock()
            if not chunk:
                conn.put(direction, _Item(now, end="eof"))
                return
            if direction is C2B and self.recorder is not None and conn.rec_key is not None:
                self.recorder.data(conn.rec_key, now, C2B, chunk)
            for data, packets in framer.feed(chunk):
                self._judge(conn, direction, data, packets, now)

    def _judge(self, conn: _Conn, direction: Direction, data: bytes,
               packets: list[tuple[Packet, int]], now: int) -> None:
        if direction is C2B:
            for packet, size in packets:
                if isinstance(packet, Connect) and not conn.client_id:
                    conn.client_id = packet.client_id
                self._tap_packet(conn, now, C2B, packet, size)
        cut: str | None = None
        item = _Item(0, data, packets)
        release = max(now, conn.last_release[direction])
        if len(packets) == 1 and not conn.framers[direction].raw and conn.client_id:
            verdict = self.rules.verdict(conn.client_id, direction, packets[0][0], now)
            if verdict.drop:
                return
            if verdict.copies > 1:
                item.data = data * verdict.copies
                item.packets = packets * verdict.copies
            if verdict.hold_until_ns is not None:
                self._hold(conn, direction, item, verdict.hold_until_ns, verdict.hold_fault)
                return
            release = max(now + verdict.delay_ns, release)
            cut = verdict.cut
            spec = self.rules.specs.get(verdict.cut_fault)
            if cut and spec is not None and spec.down_for > 0:
                self.refuse(spec, spec.down_for, (conn.client_id,))
        conn.last_release[direction] = item.release_ns = release
        conn.put(direction, item)
        if cut:
            conn.put(direction, _Item(release, end="cut_" + cut))

    def _hold(self, conn: _Conn, direction: Direction, item: _Item, until_ns: int,
              fault: int) -> None:
        conn.held[direction].append((until_ns, fault, item))
        delay = max(0.0, (until_ns - self.clock()) / NS)
        asyncio.get_running_loop().call_later(delay, self._release, conn, direction)

    def _release(self, conn: _Conn, direction: Direction) -> None:
        held = conn.held[direction]
        now = self.clock()
        while held and held[0][0] <= now + 1_000_000:
            _until, fault, item = held.popleft()
            if conn.closed:
                continue
            item.release_ns = max(now, conn.last_release[direction])
            conn.last_release[direction] = item.release_ns
            conn.put(direction, item)
            for packet, _size in item.packets:
                self.rules.record_release(now, fault, conn.client_id, direction, packet,
                                          "release")

    async def _writer(self, conn: _Conn, direction: Direction) -> None:
        """Write queued items to the other side at their release time, black holes obeyed."""
        writer = conn.bwriter if direction is C2B else conn.cwriter
        assert writer is not None
        queue = conn.queues[direction]
        wake = conn.wake[direction]
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            item = queue[0]
            wait = max(item.release_ns, conn.blackhole_until()) - self.clock()
            if wait > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait / NS)
                continue
            queue.popleft()
            if item.end:
                how = "rst" if item.end in ("rst", "cut_rst") else "fin"
                if item.end.startswith("cut_"):
                    self._abort(conn, how, B2C, record=True)
                else:     # the side that sent this direction closed, when we read its end
                    self._abort(conn, how, direction, record=True, ts_ns=item.release_ns
                                if direction is C2B else None)
                return
            now = self.clock()
            try:
                writer.write(item.data)
                if direction is B2C:
                    if self.recorder is not None and conn.rec_key is not None:
                        self.recorder.data(conn.rec_key, now, B2C, item.data)
                    for packet, size in item.packets:
                        self._tap_packet(conn, now, B2C, packet, size)
                await writer.drain()
            except (ConnectionResetError, OSError):
                self._abort(conn, "rst", direction.reverse, record=True)
                return

    def _tap_packet(self, conn: _Conn, now: int, direction: Direction, packet: Packet,
                    size: int) -> None:
        if self.tap is not None:
            self.tap(MqttPacketEvent(now, conn.info, direction, packet, size,
                                     version=conn.decoder.version))

    def _abort(self, conn: _Conn, how: str, by: Direction, *, record: bool,
               ts_ns: int | None = None) -> None:
        """Close both sides (``fin`` or ``rst``); ``by`` is who closed, seen from the client."""
        if conn.closed:
            return
        conn.closed = True
        now = self.clock() if ts_ns is None else ts_ns
        for w in (conn.cwriter, conn.bwriter):
            if w is None:
                continue
            with contextlib.suppress(Exception):
                if how == "rst":
                    sock = w.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    w.transport.abort()
                else:
                    w.close()
        if record:
            if self.recorder is not None and conn.rec_key is not None:
                self.recorder.closed(conn.rec_key, now, how, by)
            if self.tap is not None:
                self.tap(ConnectionClosed(now, conn.info, how, by))
        for direction, held in conn.held.items():
            for _until, fault, item in held:
                for packet, _size in item.packets:
                    self.rules.record_release(now, fault, conn.client_id, direction, packet,
                                              "lost")
            held.clear()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()

    def _finish(self, conn: _Conn) -> None:
        self._abort(conn, "fin", B2C, record=True)
        self._conns.discard(conn)

    def fault_log(self) -> list[FaultRecord]:
        return list(self.records)

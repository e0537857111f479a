"""The asyncio MQTT client: a thin driver around :class:`.protocol.ClientProtocol`.

It owns what sockets and tasks need and nothing else: opening the stream (:mod:`.transport`),
framing bytes with a strict :class:`~qosinspect.mqtt.framing.StreamDecoder`, passing packets and
``time.time_ns()`` to the protocol, writing what it returns, resolving the futures of publishes
and subscriptions, a keep-alive timer, and reconnecting with back-off. Every MQTT rule is in
:mod:`.protocol` and :mod:`qosinspect.mqtt`.

It works inside an event loop that is already running (Jupyter): it never calls ``asyncio.run``
and keeps no global loop; each :class:`Client` uses the loop it was connected from.

The tap sees what the client sends and receives as the same events the capture decoder makes
(:class:`~qosinspect.events.MqttPacketEvent` with ``frame=0``, ``ConnectionOpened``,
``ConnectionClosed``), so a run can be analysed without a pcap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ..errors import LocalProtocolError, MQTTError, RemoteProtocolError
from ..events import ConnectionClosed, ConnectionInfo, ConnectionOpened, MqttPacketEvent
from ..mqtt.codec import encode
from ..mqtt.enums import Direction, DisconnectReason
from ..mqtt.framing import FramingAnomaly, StreamDecoder
from ..mqtt.packets import ConnAck, Packet, Publish, SubAck, Subscription, UnsubAck, Will
from ..mqtt.properties import NO_PROPERTIES, Properties
from .errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    ConnectRefused,
    NotConnected,
    SessionLost,
)
from .messages import Inbox, Message, PendingPublish, PublishResult
from .protocol import ClientProtocol, Connected, ConnectOptions, ConnState, Output
from .reconnect import Backoff, ReconnectEvent
from .transport import Stream, TcpStream, TransportOptions, make_ssl_context, open_stream
from .websocket import WebSocketError

__all__ = ["Client", "Message", "PendingPublish", "PublishResult", "Tap"]

TapEvent = MqttPacketEvent | ConnectionOpened | ConnectionClosed
Tap = Callable[[TapEvent], None]
_HIGH_WATER = 1024 * 1024
_NETWORK_ERRORS = (OSError, ssl.SSLError, WebSocketError, asyncio.IncompleteReadError)


class Client:
    """An MQTT 3.1 / 3.1.1 / 5.0 client over TCP, TLS or WebSocket; see the module docstring.

    ``async with Client("127.0.0.1", 1883, version=5) as c:`` connects and disconnects.
    ``reconnect=True`` (or a :class:`Backoff`) reconnects after a lost connection, resuming the
    session. ``tap`` receives every packet event. ``acks`` controls the acknowledgements sent
    (hold, drop, send twice; see :mod:`.acks`).

    Received messages wait in a queue of ``message_queue`` entries for :meth:`messages`; when it
    is full the client stops reading the socket (backpressure, nothing is dropped), which also
    holds up acknowledgements coming back, so read the messages or pass ``on_message``.
    QoS 1/2 messages published while disconnected wait in the session's queue and go out on
    the next connection; they do not expire on the client's side (the broker applies Message
    Expiry from when it receives them).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *,
                 client_id: str = "", version: int = 4, transport: str = "tcp",
                 tls: ssl.SSLContext | bool | None = None, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None,
                 tls_insecure: bool = False, ws_path: str = "/mqtt",
                 username: str | None = None, password: str | bytes | None = None,
                 will: Will | None = None, clean_start: bool = True,
                 session_expiry: int | None = None, keep_alive: int = 60,
                 properties: Properties | None = None, receive_maximum: int | None = None,
                 maximum_packet_size: int | None = None, max_inflight: int = 65535,
                 max_queued: int = 1000, resubscribe: bool = True,
                 reconnect: bool | Backoff = False, connect_timeout: float = 10.0,
                 tap: Tap | None = None,
                 on_message: Callable[[Message], None] | None = None,
                 on_reconnect: Callable[[ReconnectEvent], None] | None = None,
                 conn_ids: Iterator[int] | None = None, message_queue: int = 10_000,
                 split_writes: bool = False, rcvbuf: int = 0) -> None:
        context: ssl.SSLContext | None
        if isinstance(tls, ssl.SSLContext):
            context = tls
        elif tls or ca_file or cert_file:
            context = make_ssl_context(ca_file, cert_file, key_file, insecure=tls_insecure)
        else:
            context = None
        if isinstance(password, str):
            password = password.encode()
        self.options = ConnectOptions(
            client_id=client_id, version=version, clean_start=clean_start,
            keep_alive=keep_alive, username=username, password=password, will=will,
            session_expiry=session_expiry, receive_maximum=receive_maximum,
            maximum_packet_size=maximum_packet_size, properties=properties or NO_PROPERTIES,
            max_inflight=max_inflight, max_queued=max_queued, resubscribe=resubscribe)
        self.transport_options = TransportOptions(host, port, transport, context, ws_path,
                                                  split_writes=split_writes, rcvbuf=rcvbuf)
        self.protocol = ClientProtocol(self.options)
        #: Manual control of the acknowledgements this client sends (see :mod:`.acks`).
        self.acks = self.protocol.acks
        self.backoff: Backoff | None = Backoff() if reconnect is True else (reconnect or None)
        self.connect_timeout = connect_timeout
        self.tap = tap
        self.on_message = on_message
        self.on_reconnect = on_reconnect
        self._conn_ids = conn_ids if conn_ids is not None else itertools.count()
        self._inbox: Inbox[Message] = Inbox(message_queue)
        self._reconnect_inbox: Inbox[ReconnectEvent] = Inbox(1000)
        #: The last reconnections (at most 1000), oldest first.
        self.reconnect_history: deque[ReconnectEvent] = deque(maxlen=1000)
        self.connack: ConnAck | None = None
        self.session_present = False
        self.conn_id = -1
        self._stream: Stream | None = None
        self._info: ConnectionInfo | None = None
        self._decoder: StreamDecoder | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._final_error: BaseException | None = None
        self._close_request: tuple[str, str, Direction] | None = None
        self._draining = False      # DISCONNECT sent: read to the end, act on nothing
        self._connected: Connected | None = None
        self._connected_ns = 0
        self._space = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.protocol.state is ConnState.CONNECTED

    @property
    def client_id(self) -> str:
        """The client id in use (the one the server assigned, if it did)."""
        return self.protocol.client_id

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def connect(self) -> Connected:
        """Connect and wait for CONNACK. Raises ConnectRefused, ConnectionLost, OSError,
        ssl.SSLError or WebSocketError; the first connection is never retried."""
        if self._task is not None and not self._task.done():
            raise ClientError("already connected")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # asyncio primitives belong to one loop: a client reused on another loop (two
            # asyncio.run calls) gets fresh ones, keeping the messages not read yet.
            inbox: Inbox[Message] = Inbox(self._inbox.maxsize)
            inbox.items = self._inbox.items
            self._inbox = inbox
            self._reconnect_inbox = Inbox(self._reconnect_inbox.maxsize)
            self._space = asyncio.Event()
            self._loop = loop
        self._closing = False
        self._final_error = None
        self._inbox.ended = self._reconnect_inbox.ended = False
        connected = await self._open()
        self._task = loop.create_task(self._run())
        return connected

    async def disconnect(self, reason_code: int = 0, *, properties: Properties | None = None,
                         session_expiry: int | None = None, timeout: float = 5.0) -> None:
        """Send DISCONNECT (the will is then discarded [MQTT-3.1.2-10]) and close."""
        self._closing = True
        now = time.time_ns()
        packet = self.protocol.disconnect(now, reason_code,
                                          properties=properties or NO_PROPERTIES,
                                          session_expiry=session_expiry)
        if packet is not None and self._stream is not None:
            self._close_request = ("closed by the application", "fin", Direction.C2B)
            self._write([packet], now)
        task = self._task
        if packet is not None and self._stream is not None:
            # A graceful close: our FIN after the DISCONNECT, then the reader reads (and
            # ignores) whatever still comes until the broker closes [MQTT-3.14.4-1]; closing
            # now, with bytes unread, would send RST and the DISCONNECT could be lost.
            self._draining = True
            self._stream.finish()
        elif task is not None:
            task.cancel()                   # waiting to reconnect, or connecting: stop now
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def drop_connection(self, cause: str = "dropped by the application") -> None:
        """Cut the network connection without DISCONNECT (a fault: the will is published and,
        with ``reconnect``, the client comes back and resumes the session)."""
        if self._stream is not None:
            self._close_request = (cause, "rst", Direction.C2B)
            self._stream.abort()

    def publish_nowait(self, topic: str, payload: bytes | str | None = b"", qos: int = 0,
                       retain: bool = False, *,
                       properties: Properties | None = None) -> PendingPublish:
        """Start a publish and return at once; ``await`` the handle for the result."""
        self._check_running()
        publish = Publish(topic, _payload(payload), qos, False, retain, None,
                          properties or NO_PROPERTIES)
        session = self.protocol.session
        if qos and len(session.queue) >= session.hard_limit:
            raise ClientError(f"{len(session.queue)} messages wait to be sent: the outgoing "
                              "queue is full")
        handle = PendingPublish(publish, asyncio.get_running_loop().create_future())
        now = time.time_ns()
        packets = self.protocol.publish(publish, now, tag=handle if qos else None)
        self._write(packets, now)
        if not qos:
            handle.future.set_result(PublishResult(None, 0, 0, now, now))
        return handle

    async def publish(self, topic: str, payload: bytes | str | None = b"", qos: int = 0,
                      retain: bool = False, *, properties: Properties | None = None,
                      timeout: float | None = None) -> PublishResult:
        """Publish and wait until the flow completes (QoS 1: PUBACK, QoS 2: PUBCOMP)."""
        self._check_running()
        while qos and self.protocol.session.over_limit and not self._finished:
            self._space.clear()
            await self._space.wait()
        handle = self.publish_nowait(topic, payload, qos, retain, properties=properties)
        stream = self._stream
        if stream is not None and stream.buffered() > _HIGH_WATER:
            with contextlib.suppress(*_NETWORK_ERRORS):
                await stream.drain()
        if timeout is None:
            return await handle
        return await asyncio.wait_for(asyncio.shield(handle.future), timeout)

    async def subscribe(self, topics: str | Subscription | Iterable[str | Subscription
                                                                   | tuple[str, int]],
                        qos: int = 0, *, no_local: bool = False,
                        retain_as_published: bool = False, retain_handling: int = 0,
                        properties: Properties | None = None) -> tuple[int, ...]:
        """Subscribe; returns the SUBACK codes (granted QoS, or >= 0x80 for a failure)."""
        if isinstance(topics, str | Subscription):
            topics = [topics]
        subs = [t if isinstance(t, Subscription) else
                Subscription(t, qos, no_local, retain_as_published, retain_handling)
                if isinstance(t, str) else Subscription(t[0], t[1], no_local,
                                                        retain_as_published, retain_handling)
                for t in topics]
        ack = await self._request(lambda now, fut: self.protocol.subscribe(
            subs, now, properties=properties or NO_PROPERTIES, tag=fut))
        return tuple(int(c) for c in ack.reason_codes)

    async def unsubscribe(self, topics: str | Iterable[str], *,
                          properties: Properties | None = None) -> tuple[int, ...]:
        """Unsubscribe; returns the UNSUBACK reason codes (MQTT 5; empty before, where UNSUBACK
        carries none)."""
        filters = [topics] if isinstance(topics, str) else list(topics)
        ack = await self._request(lambda now, fut: self.protocol.unsubscribe(
            filters, now, properties=properties or NO_PROPERTIES, tag=fut))
        return tuple(int(c) for c in ack.reason_codes)

    async def _request(self, make: Callable[[int, asyncio.Future[Any]], Packet]) -> Any:
        self._check_running()
        future: asyncio.Future[SubAck | UnsubAck] = asyncio.get_running_loop().create_future()
        now = time.time_ns()
        self._write([make(now, future)], now)
        return await future

    async def release_acks(self, kind: str | None = None, packet_id: int | None = None) -> int:
        """Send the held acknowledgements of ``kind`` (``"puback"``...) / ``packet_id`` now."""
        now = time.time_ns()
        packets = self.protocol.release_acks(now, kind, packet_id)
        self._write(packets, now)
        return len(packets)

    async def messages(self) -> AsyncIterator[Message]:
        """The messages received, in order; ends when the client is closed (re-raising the
        error that ended it, if any)."""
        while (message := await self.get_message()) is not None:
            yield message

    async def get_message(self, timeout: float | None = None) -> Message | None:
        """The next message; None once the client is closed (or the error that closed it);
        TimeoutError after ``timeout`` seconds, with nothing lost."""
        if timeout is None:
            message = await self._inbox.get()
        else:
            message = await asyncio.wait_for(self._inbox.get(), timeout)
        if message is None and self._final_error is not None:
            raise self._final_error
        return message

    async def reconnections(self) -> AsyncIterator[ReconnectEvent]:
        """Each reconnection as it happens; ends when the client is closed."""
        while True:
            event = await self._reconnect_inbox.get()
            if event is None:
                return
            yield event

    # -- one connection ----------------------------------------------------------------------------

    @property
    def _finished(self) -> bool:
        return self._task is not None and self._task.done()

    def _check_running(self) -> None:
        if self._task is None or self._task.done():
            if self._final_error is not None:
                raise NotConnected(f"not connected: {self._final_error}")
            raise NotConnected("not connected (call connect() first)")

    async def _open(self) -> Connected:
        """One connection up to its CONNACK (refused, lost or timed out: cleaned up, raised)."""
        opts = self.transport_options
        stream, local, peer = await asyncio.wait_for(open_stream(opts), self.connect_timeout)
        info = ConnectionInfo(next(self._conn_ids), local, peer, opts.name)
        self._stream, self._info, self.conn_id = stream, info, info.conn_id
        decoder = StreamDecoder(self.protocol.version,
                                max_packet_size=self.options.maximum_packet_size or 268_435_460)
        decoder.version_known = True
        self._decoder = decoder
        self._close_request = None
        self._draining = False
        self._connected = None
        now = time.time_ns()
        self._emit_tap(ConnectionOpened(now, info))
        self._write([self.protocol.connect(now)], now)
        try:
            async with asyncio.timeout(self.connect_timeout):
                while self.protocol.state is ConnState.CONNECTING:
                    data = await stream.read()
                    if not data:
                        raise ConnectionLost("the broker closed the connection before CONNACK")
                    await self._feed(data)
        except BaseException as exc:
            cause = ("no CONNACK within the connect timeout" if isinstance(exc, TimeoutError)
                     else _describe(exc))
            self._teardown(cause, "rst", Direction.C2B)
            if isinstance(exc, TimeoutError):
                raise ConnectionLost(f"no CONNACK within {self.connect_timeout} s") from None
            if isinstance(exc, MQTTError) and not isinstance(exc, LocalProtocolError):
                raise ConnectionLost(f"malformed packet from the broker: {exc}") from None
            raise
        refused = self.protocol.connack
        if self._connected is None:
            cause = self._close_request[0] if self._close_request else "connection failed"
            self._teardown(cause, "fin", Direction.C2B)
            if refused is not None and refused.reason_code:
                raise ConnectRefused(refused.reason_code, self.protocol.version,
                                     refused.properties.reason_string)
            raise ConnectionLost(cause)
        return self._connected

    async def _run(self) -> None:
        """Serve connections until the client is closed or reconnection gives up."""
        error: BaseException | None = None
        try:
            while True:
                cause, t_lost = await self._serve()
                if self._closing or self.backoff is None:
                    if not self._closing:
                        error = ConnectionLost(cause)
                    return
                if not await self._reconnect(cause, t_lost):
                    if not self._closing:
                        error = ConnectionLost(f"{cause}; reconnecting failed")
                    return
        except asyncio.CancelledError:
            error = None if self._closing else ClientClosed("the client task was cancelled")
            raise
        except BaseException as exc:     # a bug or a failing callback: surface it, never hang
            error = exc
        finally:
            if self._stream is not None:
                self._teardown("client stopped", "rst", Direction.C2B)
            self._finish(error)

    async def _serve(self) -> tuple[str, int]:
        stream = self._stream
        assert stream is not None
        timer = asyncio.get_running_loop().create_task(self._keepalive())
        cause, how, closed_by = "closed", "fin", Direction.B2C
        try:
            while self._close_request is None or self._draining:
                try:
                    data = await stream.read()
                except _NETWORK_ERRORS as exc:
                    cause, how = _describe(exc), "rst"
                    break
                if not data:
                    cause = "the broker closed the connection"
                    break
                if self._draining:
                    continue
                try:
                    await self._feed(data)
                except LocalProtocolError:
                    raise               # ours, not the broker's: surfaces as a bug below
                except MQTTError as exc:
                    now = time.time_ns()
                    out = self.protocol.fail(exc)
                    self._write(out.send, now)
                    cause, how, closed_by = (f"malformed packet from the broker: {exc}", "fin",
                                             Direction.C2B)
                    break
            if self._close_request is not None:
                cause, how, closed_by = self._close_request
        finally:
            timer.cancel()
        t_lost = time.time_ns()
        self._teardown(cause, how, closed_by)
        return cause, t_lost

    def silence(self, seconds: float) -> None:
        """Send no PINGREQ for ``seconds`` (see :meth:`ClientProtocol.silence`)."""
        self.protocol.silence(time.time_ns() + int(seconds * 1e9))

    def stop_reading(self, seconds: float) -> None:
        """Read nothing from the socket for ``seconds``: the kernel's receive buffer fills and
        the TCP window goes to zero (the generator's ``stop_reading`` fault, issue 16's zero
        window reproduction). Plain TCP connections only."""
        stream = self._stream
        if not isinstance(stream, TcpStream):
            return
        transport = stream.writer.transport
        if not isinstance(transport, asyncio.ReadTransport):
            return
        transport.pause_reading()

        def resume() -> None:
            if not transport.is_closing():
                transport.resume_reading()

        asyncio.get_running_loop().call_later(seconds, resume)

    async def _keepalive(self) -> None:
        while True:
            deadline = self.protocol.next_timer()
            if deadline is None:
                return
            delay = (deadline - time.time_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            now = time.time_ns()
            out = self.protocol.handle_timer(now)
            await self._handle(out, now)
            if out.close and self._stream is not None:
                self._close_request = (str(out.error), "idle", Direction.C2B)
                self._stream.abort()    # wakes the reader, which tears the connection down
                return

    async def _reconnect(self, cause: str, t_lost: int) -> bool:
        assert self.backoff is not None
        previous = self.conn_id
        attempts = 0
        for delay in self.backoff.delays():
            await asyncio.sleep(delay)
            if self._closing:
                return False
            attempts += 1
            try:
                connected = await self._open()
            except LocalProtocolError:
                raise                   # retrying cannot mend a bug of ours
            except (ClientError, MQTTError, TimeoutError, *_NETWORK_ERRORS):
                continue
            event = ReconnectEvent(self._connected_ns, t_lost, cause, connected.session_present,
                                   attempts, self.conn_id, previous, connected.resent_publish,
                                   connected.resent_pubrel, len(connected.lost))
            self.reconnect_history.append(event)
            self._reconnect_inbox.put_nowait(event)
            if self.on_reconnect is not None:
                self.on_reconnect(event)
            return True
        return False

    def _teardown(self, cause: str, how: str, closed_by: Direction) -> None:
        """The connection is over: tell the protocol, fail what waited on it, close, tap."""
        stream, info = self._stream, self._info
        if stream is None or info is None:
            return
        self._stream = None
        for tag in self.protocol.connection_lost():
            _fail(tag, ConnectionLost(cause))
        if how == "rst":
            stream.abort()
        else:
            stream.close()
        self._emit_tap(ConnectionClosed(time.time_ns(), info, how, closed_by))

    def _finish(self, error: BaseException | None) -> None:
        self._final_error = error
        reason = error if error is not None else ClientClosed("the client was closed")
        session = self.protocol.session
        tags = [flight.tag for flight in session.sender.in_flight.values()]
        tags += [item.tag for item in session.queue]
        for tag in tags:
            _fail(tag, ConnectionLost(str(reason)))
        self._space.set()
        self._inbox.end()
        self._reconnect_inbox.end()

    # -- bytes and packets -------------------------------------------------------------------------

    async def _feed(self, data: bytes) -> None:
        decoder, info = self._decoder, self._info
        assert decoder is not None and info is not None
        packets = decoder.feed(data)
        sizes = decoder.sizes
        now = time.time_ns()
        version = self.protocol.version
        for packet, size in zip(packets, sizes, strict=True):
            assert not isinstance(packet, FramingAnomaly)    # strict mode raises instead
            if self.tap is not None:
                self.tap(MqttPacketEvent(now, info, Direction.B2C, packet, size,
                                         version=version))
            out = self.protocol.receive(packet, now)
            await self._handle(out, now)
            if out.close:
                break

    async def _handle(self, out: Output, now: int) -> None:
        self._write(out.send, now)
        for done in out.completed:
            if isinstance(done.tag, PendingPublish):
                pid = done.publish.packet_id
                done.tag._complete(done, out.pubrec_reasons.get(pid) if pid else None)
        self._space.set()           # the queue may have moved: wake pushed-back publishers
        for tag, ack in out.acked:
            if isinstance(tag, asyncio.Future) and not tag.done():
                tag.set_result(ack)
        if out.connected is not None:
            self._connected, self._connected_ns = out.connected, now
            self.connack = out.connected.connack
            self.session_present = out.connected.session_present
            for tag in out.connected.lost:
                _fail(tag, SessionLost("the broker did not resume the session [MQTT-3.2.2-5]: "
                                       "the message may or may not have been delivered"))
        if out.close and self._close_request is None:
            by = Direction.B2C if out.server_disconnect is not None else Direction.C2B
            self._close_request = (_close_cause(out), "fin", by)
        conn_id = self.conn_id
        for p in out.deliver:
            message = Message(p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id,
                              p.properties, now, conn_id)
            if self.on_message is not None:
                self.on_message(message)
            else:
                await self._inbox.put(message)

    def _write(self, packets: list[Packet], now: int) -> None:
        stream, info = self._stream, self._info
        if not packets or stream is None or info is None:
            return
        version = self.protocol.version
        in_flight = self.protocol.session.sender.in_flight
        chunks: list[bytes] = []
        for p in packets:
            data = encode(p, version)
            chunks.append(data)
            if isinstance(p, Publish) and p.packet_id is not None:
                flight = in_flight.get(p.packet_id)
                if flight is not None and isinstance(flight.tag, PendingPublish):
                    flight.tag.packet_id = p.packet_id
            if self.tap is not None:
                self.tap(MqttPacketEvent(now, info, Direction.C2B, p, len(data),
                                         version=version))
        stream.write(b"".join(chunks))

    def _emit_tap(self, event: TapEvent) -> None:
        if self.tap is not None:
            self.tap(event)


def _payload(payload: bytes | bytearray | memoryview | str | None) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    raise TypeError(f"a payload is bytes or str, not {type(payload).__name__}")


def _fail(tag: object, error: BaseException) -> None:
    future = tag.future if isinstance(tag, PendingPublish) else tag
    if isinstance(future, asyncio.Future) and not future.done():
        future.set_exception(error)
        future.exception()        # retrieved: nobody awaiting it is not an error


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the broker"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the broker closed the connection in the middle of a frame"
    return str(exc) or type(exc).__name__


def _close_cause(out: Output) -> str:
    if out.server_disconnect is not None:
        code = int(out.server_disconnect.reason_code)
        try:
            name = DisconnectReason(code).name.lower().replace("_", " ")
        except ValueError:
            name = "unknown reason"
        text = f"DISCONNECT from the broker: {name} ({code:#04x})"
        reason = out.server_disconnect.properties.reason_string
        return f"{text}: {reason}" if reason else text
    if isinstance(out.error, RemoteProtocolError):
        return f"protocol error by the broker: {out.error}"
    if out.error is not None:
        return str(out.error)
    if out.refused is not None:
        return f"CONNACK refused the connection ({int(out.refused.reason_code):#04x})"
    return "closed"

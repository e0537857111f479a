"""The client's life outside the happy path: blocking use from plain code, reuse across event
loops, closing while it waits to reconnect, and a real broker outage (mosquitto restarted with
persistence) survived by reconnecting with back-off and resuming the session."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from qosinspect.broker.auth import Authenticator
from qosinspect.broker.server import BrokerServer, Listener, ServerConfig
from qosinspect.client import Backoff, BlockingClient, Client, ConnectionLost, NotConnected
from qosinspect.events import ConnectionClosed, ConnectionOpened, MqttPacketEvent
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import PingReq
from qosinspect.testing.mosquitto import Mosquitto

from ._util import Proxy, Recorder, run, take, unique_topic, until


def cid(name: str) -> str:
    return f"qi-{name}-{uuid.uuid4().hex[:6]}"


@pytest.mark.tools
def test_blocking_client_from_plain_code(mosquitto: Mosquitto) -> None:
    """No event loop in the caller: the helper runs a private one in a thread, next to another
    client running on its own loop in this thread (no global loop anywhere)."""
    topic = unique_topic("blocking")
    with BlockingClient("127.0.0.1", mosquitto.port, client_id=cid("b"), version=5) as c:
        assert c.subscribe(topic, 2) == (2,)
        assert c.publish(topic, "one", 2).reason_code == 0

        async def other() -> None:
            async with Client("127.0.0.1", mosquitto.port, client_id=cid("a")) as a:
                await a.publish(topic, "two", 1)

        run(other())
        got = list(c.messages(timeout=0.5))
        assert [m.payload for m in got] == [b"one", b"two"]
        with pytest.raises(TimeoutError):
            c.get_message(timeout=0.05)
        assert threading.active_count() >= 2
    assert not c._thread.is_alive()


@pytest.mark.tools
def test_client_reused_on_a_second_event_loop(mosquitto: Mosquitto) -> None:
    """Two asyncio.run calls, one Client: the second loop gets fresh asyncio primitives."""
    client = Client("127.0.0.1", mosquitto.port, client_id=cid("reuse"))
    topic = unique_topic("reuse")

    async def first() -> None:
        await client.connect()
        await client.subscribe(topic, 1)
        await client.publish(topic, "from loop 1", 1)
        await take(client, 1)
        await client.disconnect()

    async def second() -> bytes:
        await client.connect()
        await client.subscribe(topic, 1)
        await client.publish(topic, "from loop 2", 1)
        [m] = await take(client, 1)
        await client.disconnect()
        return m.payload

    run(first())
    assert run(second()) == b"from loop 2"


def test_disconnect_while_waiting_to_reconnect_returns_at_once() -> None:
    """The broker goes away; the client waits 30 s before its next attempt. disconnect() does
    not wait for that, and messages() just ends (the application closed it)."""
    async def main() -> float:
        server = BrokerServer(ServerConfig([Listener("127.0.0.1", 0)]),
                              auth=Authenticator(allow_anonymous=True))
        await server.start()
        tap = Recorder()
        c = Client("127.0.0.1", server.port, client_id=cid("wait"),
                   reconnect=Backoff(30, 30, jitter=0), tap=tap)
        await c.connect()
        await server.close()
        await until(lambda: not c.connected, what="connection lost")
        started = time.monotonic()
        await c.disconnect()
        took = time.monotonic() - started
        assert [m async for m in c.messages()] == []
        with pytest.raises(NotConnected):
            await c.publish("t", "x", 1)
        closed = [e for e in tap if isinstance(e, ConnectionClosed)]
        assert len(closed) == 1 and closed[0].closed_by == Direction.B2C
        return took

    assert run(main(), timeout=10) < 5


def test_without_reconnect_a_lost_connection_ends_messages_with_the_cause() -> None:
    async def main() -> None:
        server = BrokerServer(ServerConfig([Listener("127.0.0.1", 0)]),
                              auth=Authenticator(allow_anonymous=True))
        await server.start()
        c = Client("127.0.0.1", server.port, client_id=cid("once"))
        await c.connect()
        pending = c.publish_nowait("t", "x", 1)
        c.acks.hold("puback")
        await server.close()
        with pytest.raises(ConnectionLost):
            async with asyncio.timeout(5):
                async for _ in c.messages():
                    pass
        assert pending.done()
        await c.disconnect()

    run(main())


@pytest.mark.tools
@pytest.mark.slow
def test_broker_restart_with_persistence_resumes_the_session() -> None:
    """A QoS 1 message is received and its PUBACK held; mosquitto stops (saving its
    persistence file) and comes back on the same port. The client retries with back-off until
    it is back, the session is present, and mosquitto redelivers the message from its file
    with DUP=1 and the same packet id [MQTT-4.4.0-1] [MQTT-3.3.1-1]. The tap shows one
    ConnectionOpened/ConnectionClosed pair per connection."""
    broker = Mosquitto(persistence=True)
    topic = unique_topic("restart")
    try:
        broker.start()

        async def main() -> None:
            tap = Recorder()
            sub = Client("127.0.0.1", broker.port, client_id=cid("restart"),
                         clean_start=False, reconnect=Backoff(0.1, 0.3, jitter=0), tap=tap)
            await sub.connect()
            await sub.subscribe(topic, 1)
            sub.acks.hold("puback")
            async with Client("127.0.0.1", broker.port, client_id=cid("p")) as pub:
                await pub.publish(topic, "across the restart", 1)
            [first] = await take(sub, 1)
            sub.acks.auto()
            await asyncio.to_thread(broker.stop)
            await until(lambda: not sub.connected, what="connection lost")
            await asyncio.sleep(0.5)                  # a few attempts fail meanwhile
            await asyncio.to_thread(broker.start)
            await until(lambda: sub.reconnect_history, 10, "reconnection")
            event = sub.reconnect_history[0]
            assert event.session_present and event.attempts >= 2
            assert event.gap_ns >= 400_000_000
            [again] = await take(sub, 1)
            assert (again.payload, again.dup, again.packet_id) == (
                b"across the restart", True, first.packet_id)
            assert (first.dup, first.conn_id, again.conn_id) == (False, 0, event.conn_id)
            await sub.disconnect()
            opened = [e.conn.conn_id for e in tap if isinstance(e, ConnectionOpened)]
            closed = [e.conn.conn_id for e in tap if isinstance(e, ConnectionClosed)]
            assert opened == closed and opened[0] == 0 and opened[-1] == event.conn_id

        run(main(), timeout=30)
    finally:
        broker.cleanup()


def test_keep_alive_timeout_closes_and_reconnects() -> None:
    """No PINGRESP within the keep alive after a PINGREQ (a proxy swallows the broker's
    bytes): the client closes the connection ("idle" in the tap) and reconnects (3.1.2.10)."""
    async def main() -> None:
        server = BrokerServer(ServerConfig([Listener("127.0.0.1", 0)]),
                              auth=Authenticator(allow_anonymous=True))
        async with server, Proxy(server.port) as proxy:
            tap = Recorder()
            c = Client("127.0.0.1", proxy.port, client_id=cid("idle"), keep_alive=1,
                       reconnect=Backoff(0.05, 0.2), tap=tap)
            await c.connect()
            proxy.swallow_b2c = True
            await until(lambda: any(isinstance(e, ConnectionClosed) for e in tap), 5,
                        "the connection closed")
            proxy.swallow_b2c = False
            await until(lambda: c.reconnect_history, 5, "reconnection")
            event = c.reconnect_history[0]
            assert "PINGRESP" in event.cause
            [closed] = [e for e in tap if isinstance(e, ConnectionClosed)]
            assert (closed.how, closed.closed_by) == ("idle", Direction.C2B)
            first = [e.packet for e in tap if isinstance(e, MqttPacketEvent)
                     and e.conn.conn_id == 0 and e.direction == Direction.C2B]
            assert isinstance(first[-1], PingReq)
            await c.disconnect()

    run(main(), timeout=15)


def test_disconnect_half_closes_and_reads_until_the_broker_closes() -> None:
    """DISCONNECT, then FIN, then the client goes on reading (and ignoring) what the broker still
    sends until it closes [MQTT-3.14.4-2]: the peer sees the DISCONNECT and an orderly end, never
    a reset, even when bytes arrive after the DISCONNECT was sent (closing a socket with unread
    bytes makes the kernel answer RST, and a peer that takes the RST may lose the DISCONNECT)."""
    seen: dict[str, object] = {}

    async def main() -> None:
        got_disconnect = asyncio.Event()
        finished = asyncio.Event()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readexactly(2)
                await reader.readexactly(head[1])               # CONNECT (short: 1-byte length)
                writer.write(b"\x20\x02\x00\x00")               # CONNACK, accepted
                seen["disconnect"] = await reader.readexactly(2)
                got_disconnect.set()
                seen["after"] = await reader.read(100)          # b"" is a FIN, not a reset
                # bytes sent after the client's FIN: read and ignored, no RST back
                for _ in range(3):                              # a reset shows by the 2nd
                    writer.write(b"\x30\x07\x00\x03a/b" + b"xy")  # PUBLISH QoS 0
                    await writer.drain()
                    await asyncio.sleep(0.1)
                seen["reset"] = False
            except (ConnectionResetError, BrokenPipeError):
                seen["reset"] = True
            finally:
                writer.close()
                finished.set()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            client = Client("127.0.0.1", port, client_id=cid("half"), keep_alive=0)
            await client.connect()
            await client.disconnect(timeout=5.0)
            seen["returned_after_peer_closed"] = finished.is_set()
            await asyncio.wait_for(finished.wait(), 5)
        finally:
            server.close()
            await server.wait_closed()

    run(main())
    assert seen["disconnect"] == b"\xe0\x00"
    assert seen["after"] == b""
    assert seen["reset"] is False
    assert seen["returned_after_peer_closed"] is True

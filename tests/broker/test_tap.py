"""The broker's tap, and the broker inside a running asyncio loop (as in Jupyter).

The tap emits the events the capture decoder produces; the last test records the same run
with tcpdump and checks that the pcap, decoded by qosinspect.capture, tells the same story.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from qosinspect.broker import BrokerServer, Listener, ServerConfig
from qosinspect.broker.auth import Authenticator
from qosinspect.events import ConnectionClosed, ConnectionOpened, Event, MqttPacketEvent
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
)
from qosinspect.testing.tools import loopback_capture

from .harness import RawClient, run_broker, wait_for


async def _client_session(port: int) -> None:
    """CONNECT, SUBSCRIBE, a QoS 2 message to itself (both flows), DISCONNECT."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = StreamDecoder(5)
    inbox: list[Packet] = []

    async def expect(kind: type) -> Packet:
        while not inbox:
            inbox.extend(decoder.feed(await reader.read(4096)))  # type: ignore[arg-type]
        packet = inbox.pop(0)
        assert isinstance(packet, kind), packet
        return packet

    writer.write(encode(Connect("tapped", 5), 5))
    await expect(ConnAck)
    writer.write(encode(Subscribe(1, (Subscription("tap/#", 2),)), 5))
    await expect(SubAck)
    writer.write(encode(Publish("tap/x", b"hello", 2, packet_id=10), 5))
    await expect(PubRec)
    writer.write(encode(PubRel(10), 5))
    got = await expect(Publish)
    await expect(PubComp)
    writer.write(encode(PubRec(got.packet_id), 5))  # type: ignore[union-attr]
    await expect(PubRel)
    writer.write(encode(PubComp(got.packet_id), 5))  # type: ignore[union-attr]
    writer.write(encode(Disconnect(), 5))
    await writer.drain()
    writer.close()


def test_inside_a_running_loop_with_the_tap_as_an_async_queue() -> None:
    async def main() -> list[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        cfg = ServerConfig([Listener("127.0.0.1", 0)])
        async with BrokerServer(cfg, auth=Authenticator(True), tap=queue.put_nowait) as broker:
            assert broker.port > 0
            await _client_session(broker.port)
            events: list[Event] = []
            while not any(isinstance(e, ConnectionClosed) for e in events):
                events.append(await asyncio.wait_for(queue.get(), 5))
        return events

    events = asyncio.run(main())
    opened, *packets, closed = events
    assert isinstance(opened, ConnectionOpened) and isinstance(closed, ConnectionClosed)
    info = opened.conn
    assert info.conn_id == 0 and info.transport == "tcp" and info.broker.host == "127.0.0.1"
    assert closed.conn == info and closed.how == "fin" and closed.closed_by == Direction.C2B
    assert all(isinstance(e, MqttPacketEvent) and e.conn == info and e.frame == 0
               and e.version == 5 for e in packets)
    flow = [(e.direction.value, type(e.packet).__name__) for e in packets]  # type: ignore[union-attr]
    assert flow == [("c2b", "Connect"), ("b2c", "ConnAck"), ("c2b", "Subscribe"),
                    ("b2c", "SubAck"), ("c2b", "Publish"), ("b2c", "PubRec"),
                    ("b2c", "Publish"),           # forwarded at once (QoS 2 "method B")
                    ("c2b", "PubRel"), ("b2c", "PubComp"),
                    ("c2b", "PubRec"), ("b2c", "PubRel"), ("c2b", "PubComp"),
                    ("c2b", "Disconnect")]
    for e in packets:
        assert isinstance(e, MqttPacketEvent)
        assert e.wire_len == len(encode(e.packet, 5))
    stamps = [e.ts_ns for e in events]
    assert stamps == sorted(stamps) and abs(stamps[0] - time.time_ns()) < 60 * 10**9


def test_tap_sees_refusals_and_broker_side_closes() -> None:
    events: list[Event] = []
    with run_broker(auth=Authenticator(False), tap=events.append) as b:
        c = RawClient(b.port)
        assert c.connect("nobody") == ConnAck(False, 5)
        assert c.closed_by_peer()
        wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in events),
                 what="the close event")
    closed = next(e for e in events if isinstance(e, ConnectionClosed))
    assert closed.closed_by == Direction.B2C
    assert [type(e.packet).__name__ for e in events if isinstance(e, MqttPacketEvent)] == \
        ["Connect", "ConnAck"]


def test_tap_and_pcap_of_the_same_run_agree(tmp_path: Path) -> None:
    """tcpdump records a run; the decoded pcap and the tap list the same packets per
    connection and direction, in the same order, with the same sizes."""
    from qosinspect.capture import iter_events

    events: list[Event] = []
    pcap = tmp_path / "run.pcapng"
    # The product's live capture: proven to capture before the run, and to hold every packet
    # of it (the closes included) once it ends, before the broker stops.
    with run_broker(tap=events.append) as b, loopback_capture(pcap, [b.port]):
        asyncio.run(_client_session(b.port))
        s = RawClient(b.port)
        s.connect("second")
        s.send(Subscribe(1, (Subscription("tap/#", 1),)))
        s.recv()
        p = RawClient(b.port)
        p.connect("third")
        for i in range(20):
            p.send(Publish("tap/y", bytes([i]) * 100, 1, packet_id=i + 1))
        for _ in range(20):
            m = s.recv()
            s.send(PubAck(m.packet_id))  # type: ignore[union-attr]
        p.recv_n(20)
        s.close()
        p.close()
        wait_for(lambda: sum(isinstance(e, ConnectionClosed) for e in events) ==
                 sum(isinstance(e, ConnectionOpened) for e in events),
                 what="every connection closed")

    def key(client_port: int, e: MqttPacketEvent) -> tuple[int, str, Packet, int]:
        return (client_port, e.direction.value if e.direction else "?", e.packet, e.wire_len)

    tapped = [key(e.conn.client.port, e) for e in events if isinstance(e, MqttPacketEvent)]
    decoded = [key(e.conn.client.port, e) for e in iter_events(pcap, ports=[b.port])
               if isinstance(e, MqttPacketEvent)]
    assert len(tapped) > 60
    for port in {k[0] for k in tapped}:
        for direction in ("c2b", "b2c"):
            mine = [k for k in tapped if k[0] == port and k[1] == direction]
            theirs = [k for k in decoded if k[0] == port and k[1] == direction]
            assert mine == theirs, f"client port {port} {direction}"

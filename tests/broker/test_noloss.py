"""No loss under backpressure: 10 publishers (5 at QoS 1, 5 at QoS 2) for 10 s into one slow
subscriber. Every message the broker acknowledged arrives, in order per publisher, and none
twice at QoS 2; the publishers were paused (not dropped) while the subscriber lagged.

The clients are small asyncio MQTT clients on the project's codec, so the test controls the
subscriber's pace exactly (short reads with pauses between them).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from qosinspect.broker import BrokerConfig
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import (
    Connect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
)

from .harness import run_broker

DURATION = 10.0
WINDOW = 20


async def _open(port: int, client_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                   StreamDecoder]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(Connect(client_id, 4)))
    decoder = StreamDecoder(4)
    got: list[Packet] = []
    while not got:
        data = await reader.read(4096)
        assert data, "closed before CONNACK"
        got.extend(decoder.feed(data))  # type: ignore[arg-type]
    return reader, writer, decoder


async def publisher(port: int, index: int, qos: int, stop: asyncio.Event,
                    accepted: list[int]) -> None:
    """Publishes 0, 1, 2, ... with WINDOW in flight; ``accepted``: acknowledged sequence
    numbers (PUBACK, or PUBREC for QoS 2: the broker owns the message from then on)."""
    reader, writer, decoder = await _open(port, f"pub-{index}")
    free = asyncio.Semaphore(WINDOW)
    by_pid: dict[int, int] = {}
    done = asyncio.Event()

    async def read_acks() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for packet in decoder.feed(data):
                if isinstance(packet, PubAck):
                    accepted.append(by_pid.pop(packet.packet_id))
                    free.release()
                elif isinstance(packet, PubRec):
                    accepted.append(by_pid[packet.packet_id])
                    writer.write(encode(PubRel(packet.packet_id)))
                elif isinstance(packet, PubComp):
                    del by_pid[packet.packet_id]
                    free.release()
            if stop.is_set() and not by_pid:
                done.set()

    acks = asyncio.get_running_loop().create_task(read_acks())
    seq = 0
    while not stop.is_set():
        await free.acquire()
        if stop.is_set():
            break
        pid = seq % 65535 + 1
        by_pid[pid] = seq
        writer.write(encode(Publish(f"load/{index}", b"%d:%d" % (index, seq), qos,
                                    packet_id=pid)))
        seq += 1
        if seq % WINDOW == 0:
            await writer.drain()
    if by_pid:
        await asyncio.wait_for(done.wait(), 60)
    writer.close()
    acks.cancel()


async def slow_subscriber(port: int, ready: asyncio.Event, received: list[tuple[int, int, int]],
                          finished: asyncio.Event) -> None:
    reader, writer, decoder = await _open(port, "slow-sub")
    writer.write(encode(Subscribe(1, (Subscription("load/#", 2),))))
    subscribed = False
    while not finished.is_set():
        try:
            data = await asyncio.wait_for(reader.read(512), 0.5)   # small reads...
        except TimeoutError:
            continue
        if not data:
            return
        out = []
        for packet in decoder.feed(data):
            if isinstance(packet, Publish):
                idx, seq = packet.payload.split(b":")
                received.append((int(idx), int(seq), packet.qos))
                pid = packet.packet_id or 0
                if packet.qos == 1:
                    out.append(encode(PubAck(pid)))
                elif packet.qos == 2:
                    out.append(encode(PubRec(pid)))
            elif isinstance(packet, PubRel):
                out.append(encode(PubComp(packet.packet_id)))
            elif not subscribed:
                subscribed = True
                ready.set()
        writer.write(b"".join(out))
        await asyncio.sleep(0.004)                                  # ...and a pause
    writer.close()


@pytest.mark.slow
def test_ten_publishers_into_one_slow_subscriber_lose_nothing() -> None:
    cfg = BrokerConfig(max_queued_messages=500)
    with run_broker(engine=cfg) as b:
        accepted: dict[int, list[int]] = {i: [] for i in range(10)}
        received: list[tuple[int, int, int]] = []

        async def main() -> None:
            stop = asyncio.Event()
            ready = asyncio.Event()
            finished = asyncio.Event()
            sub = asyncio.get_running_loop().create_task(
                slow_subscriber(b.port, ready, received, finished))
            await asyncio.wait_for(ready.wait(), 10)
            pubs = [asyncio.get_running_loop().create_task(
                publisher(b.port, i, 1 if i < 5 else 2, stop, accepted[i])) for i in range(10)]
            await asyncio.sleep(DURATION)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*pubs), 60)
            want = sum(len(a) for a in accepted.values())
            deadline = time.monotonic() + 60
            while len(received) < want and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)            # anything extra (a duplicate) would show now
            finished.set()
            await asyncio.wait_for(sub, 10)

        asyncio.run(main())
        stats = b.call(lambda: b.server.stats)
    total = sum(len(a) for a in accepted.values())
    assert total > 1000, "the publishers hardly published"
    by_pub: dict[int, list[int]] = {i: [] for i in range(10)}
    for idx, seq, qos in received:
        assert qos == (1 if idx < 5 else 2)                     # min(publish, subscription)
        by_pub[idx].append(seq)
    for i in range(10):
        assert set(by_pub[i]) == set(accepted[i]), f"publisher {i}: lost messages"
        assert by_pub[i] == sorted(by_pub[i]), f"publisher {i}: out of order"
        if i >= 5:
            dups = [s for s, n in Counter(by_pub[i]).items() if n > 1]
            assert not dups, f"publisher {i}: QoS 2 duplicates {dups[:5]}"
    assert stats.publishers_paused > 0                          # backpressure, not loss
    assert stats.dropped_qos0 == 0 and stats.slow_subscribers_closed == 0

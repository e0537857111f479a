"""The "slow subscriber" scenario of ``broker.py``: 1 publisher at QoS 1 and a fixed rate, 10
subscribers that keep up and 1 that never reads its socket, for 30 s.

The clients are asyncio clients on the project's codec in this process. Measured per
broker: for the 10, what they received of what was acknowledged to the publisher, the longest
gap between two consecutive messages (a stall: at 500 msg/s they are 2 ms apart) and the
end-to-end latency; for the publisher, its longest wait for a PUBACK; for the slow one, what
happened to it: how many messages reached its socket, and whether and when the broker closed
it (read afterwards from its unread socket: the packets and the end of the stream).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)

__all__ = ["open_client", "run_slow_subscriber"]

TOPIC = "bench/slow"
_STAMP = struct.Struct("<Iq")          # sequence number, send time (monotonic ns)


async def open_client(port: int, client_id: str, version: int = 4
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, StreamDecoder]:
    """A connected client (keep alive 0: it may stay silent): reader, writer, decoder."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(Connect(client_id, version, keep_alive=0), version))
    decoder = StreamDecoder(version)
    got: list[Packet] = []
    while not got:
        data = await reader.read(4096)
        if not data:
            raise RuntimeError(f"{client_id}: closed before CONNACK")
        got.extend(decoder.feed(data))  # type: ignore[arg-type]
    if not isinstance(got[0], ConnAck) or got[0].reason_code:
        raise RuntimeError(f"{client_id}: refused {got[0]}")
    return reader, writer, decoder


async def _subscribe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     decoder: StreamDecoder, version: int = 4) -> None:
    writer.write(encode(Subscribe(1, (Subscription(TOPIC, 1),)), version))
    while True:
        data = await reader.read(4096)
        if not data:
            raise RuntimeError("closed before SUBACK")
        if any(isinstance(p, SubAck) for p in decoder.feed(data)):
            return


async def _fast(port: int, index: int, stop: asyncio.Event, row: dict[str, Any],
                ready: asyncio.Event) -> None:
    reader, writer, decoder = await open_client(port, f"fast-{index}")
    await _subscribe(reader, writer, decoder)
    ready.set()
    seqs: list[int] = []
    latencies: list[int] = []
    last = 0
    max_gap = 0
    while not stop.is_set():
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.5)
        except TimeoutError:
            continue
        if not data:
            break
        now = time.monotonic_ns()
        acks = []
        for p in decoder.feed(data):
            if isinstance(p, Publish):
                seq, sent = _STAMP.unpack_from(p.payload)
                seqs.append(seq)
                latencies.append(now - sent)
                if last:
                    max_gap = max(max_gap, now - last)
                last = now
                acks.append(encode(PubAck(p.packet_id or 0)))
        writer.write(b"".join(acks))
    writer.close()
    row.update(seqs=seqs, latencies=latencies, max_gap_ns=max_gap)


async def _publisher(port: int, rate: float, duration: float, acked: list[int],
                     waits: list[int]) -> None:
    reader, writer, decoder = await open_client(port, "publisher")
    sent_at: dict[int, tuple[int, int]] = {}
    free = asyncio.Semaphore(100)

    async def read_acks() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.monotonic_ns()
            for p in decoder.feed(data):
                if isinstance(p, PubAck) and p.packet_id in sent_at:
                    seq, t = sent_at.pop(p.packet_id)
                    acked.append(seq)
                    waits.append(now - t)
                    free.release()

    acks = asyncio.get_running_loop().create_task(read_acks())
    t0 = time.monotonic()
    seq = 0
    while time.monotonic() - t0 < duration:
        due = t0 + seq / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await free.acquire()
        pid = seq % 65535 + 1
        now = time.monotonic_ns()
        sent_at[pid] = (seq, now)
        writer.write(encode(Publish(TOPIC, _STAMP.pack(seq, now) + bytes(52), 1,
                                    packet_id=pid)))
        seq += 1
    deadline = time.monotonic() + 15
    while sent_at and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    acks.cancel()
    writer.close()


async def _scenario(port: int, rate: float, duration: float) -> dict[str, Any]:
    stop = asyncio.Event()
    rows: list[dict[str, Any]] = [{} for _ in range(10)]
    readies = [asyncio.Event() for _ in range(10)]
    loop = asyncio.get_running_loop()
    fast = [loop.create_task(_fast(port, i, stop, rows[i], readies[i])) for i in range(10)]
    for ready in readies:
        await asyncio.wait_for(ready.wait(), 10)
    s_reader, s_writer, s_decoder = await open_client(port, "never-reads", 5)
    await _subscribe(s_reader, s_writer, s_decoder, 5)
    slow_from = time.monotonic()
    acked: list[int] = []
    waits: list[int] = []
    await _publisher(port, rate, duration, acked, waits)
    await asyncio.sleep(2)                       # the last messages reach the 10
    stop.set()
    await asyncio.gather(*fast)
    # now read what the slow one never read: its messages, then perhaps the broker's close
    slow_msgs = 0
    closed = False
    reason = None
    while True:
        try:
            data = await asyncio.wait_for(s_reader.read(1 << 20), 1.0)
        except TimeoutError:
            break
        if not data:
            closed = True
            break
        for p in s_decoder.feed(data):
            if isinstance(p, Publish):
                slow_msgs += 1
            elif isinstance(p, Disconnect):
                reason = p.reason_code
    s_writer.close()
    want = set(acked)
    got_all = [set(r["seqs"]) >= want for r in rows]
    gaps_ms = [r["max_gap_ns"] / 1e6 for r in rows]
    lat = sorted(x for r in rows for x in r["latencies"])
    return {
        "published_acked": len(acked),
        "publisher_rate_msgs_per_s": rate,
        "keepers_received_all": all(got_all),
        "keepers_lost": sum(len(want - set(r["seqs"])) for r in rows),
        "keepers_max_gap_ms": round(max(gaps_ms), 1),
        "keepers_latency_p50_ms": round(lat[len(lat) // 2] / 1e6, 3) if lat else None,
        "keepers_latency_p99_ms": round(lat[int(len(lat) * 0.99)] / 1e6, 3) if lat else None,
        "publisher_max_ack_wait_ms": round(max(waits) / 1e6, 1) if waits else None,
        "slow": {"messages_that_reached_its_socket": slow_msgs,
                 "disconnected_by_broker": closed,
                 "disconnect_reason": None if reason is None else f"0x{reason:02X}",
                 "subscribed_for_s": round(time.monotonic() - slow_from, 1)},
    }


def run_slow_subscriber(port: int, *, rate: float = 500, duration: float = 30
                        ) -> dict[str, Any]:
    """Run the scenario against the broker on ``port``; the figures as a dict."""
    return asyncio.run(_scenario(port, rate, duration))

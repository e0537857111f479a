"""The "retained" scenario of ``broker.py`` (issue 12, point 10): 100,000 retained messages
(64-byte payloads, 50-character topics), then a subscriber to ``#`` receives them all while
another client pings the broker every 10 ms.

Measured per broker: its resident memory (``/proc/PID/status``) idle, with the retained set,
and at its peak; how long the ``#`` subscriber took to receive everything; and the longest
PINGREQ -> PINGRESP round trip of the other client meanwhile (how long the broker kept other
clients waiting).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from _slow_subscriber import open_client  # the same small client

from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import PingReq, PingResp, Publish, Subscribe, Subscription

__all__ = ["run_retained"]


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of process ``pid`` in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


async def _ping(writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                decoder: StreamDecoder) -> float:
    t = time.monotonic()
    writer.write(encode(PingReq()))
    while True:
        data = await reader.read(4096)
        if not data:
            raise RuntimeError("the broker closed the pinging client")
        if any(isinstance(p, PingResp) for p in decoder.feed(data)):
            return time.monotonic() - t


async def _scenario(port: int, pid: int, n: int) -> dict[str, Any]:
    idle = _memory_kib(pid)["VmRSS"]
    reader, writer, decoder = await open_client(port, "retainer")
    batch = []
    for i in range(n):
        topic = f"sensors/building-{i // 1000:03d}/room-{i % 1000:03d}/temperature"
        batch.append(encode(Publish(topic, bytes(64), 0, False, True)))
        if len(batch) == 1000:
            writer.write(b"".join(batch))
            batch.clear()
            await writer.drain()
    await _ping(writer, reader, decoder)          # in order: every message is retained now
    writer.close()
    await asyncio.sleep(0.5)
    stored = _memory_kib(pid)["VmRSS"]
    p_reader, p_writer, p_decoder = await open_client(port, "pinger")
    s_reader, s_writer, s_decoder = await open_client(port, "everything")
    rtts: list[float] = []
    done = asyncio.Event()

    async def pinger() -> None:
        while not done.is_set():
            rtts.append(await _ping(p_writer, p_reader, p_decoder))
            await asyncio.sleep(0.01)

    ping_task = asyncio.get_running_loop().create_task(pinger())
    t0 = time.monotonic()
    s_writer.write(encode(Subscribe(1, (Subscription("#", 0),))))
    got = 0
    while got < n:
        try:
            data = await asyncio.wait_for(s_reader.read(1 << 20), 10)
        except TimeoutError:
            break
        if not data:
            break
        got += sum(1 for p in s_decoder.feed(data) if isinstance(p, Publish))
    took = time.monotonic() - t0
    done.set()
    await ping_task
    mem = _memory_kib(pid)
    p_writer.close()
    s_writer.close()
    return {
        "retained": n, "received_by_hash_subscriber": got,
        "receive_all_s": round(took, 2),
        "other_client_max_ping_ms": round(max(rtts) * 1000, 1) if rtts else None,
        "other_client_pings": len(rtts),
        "rss_idle_mb": round(idle / 1024, 1), "rss_with_retained_mb": round(stored / 1024, 1),
        "rss_after_send_mb": round(mem["VmRSS"] / 1024, 1),
        "rss_peak_mb": round(mem["VmHWM"] / 1024, 1),
    }


def run_retained(port: int, pid: int, *, n: int = 100_000) -> dict[str, Any]:
    """Run the scenario against the broker on ``port`` (process ``pid``)."""
    return asyncio.run(_scenario(port, pid, n))

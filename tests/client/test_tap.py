"""The client's tap against a packet capture of the same run: tcpdump (through the product's
live capture) records the loopback traffic while the client talks to mosquitto, the project's
capture decoder reads the file, and every MQTT packet the tap reported is on the wire, in the
same order per direction."""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from qosinspect.capture.decoder import iter_events
from qosinspect.client import Backoff, Client
from qosinspect.events import ConnectionClosed, ConnectionOpened, MqttPacketEvent
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import loopback_capture

from ._util import Proxy, Recorder, run, take, unique_topic

pytestmark = [pytest.mark.tools, pytest.mark.slow]


def _by_connection(events: list[Any],
                   ports: set[int]) -> dict[tuple[int, int, int, str], list[Any]]:
    """Packets per connection and direction, for the connections to the ``ports``. A
    connection is (client port, broker port, n-th opening of that pair): a client port can be
    used again in the same run once the broker closed first."""
    out: dict[tuple[int, int, int, str], list[Any]] = defaultdict(list)
    openings: dict[tuple[int, int], int] = defaultdict(int)
    for e in events:
        if isinstance(e, ConnectionOpened | MqttPacketEvent) and e.conn.broker.port in ports:
            pair = (e.conn.client.port, e.conn.broker.port)
            if isinstance(e, ConnectionOpened):
                openings[pair] += 1
            else:
                out[(*pair, openings[pair], str(e.direction))].append(e.packet)
    return dict(out)


def test_tap_agrees_with_a_capture_of_the_same_run(mosquitto: Mosquitto, tmp_path: Path) -> None:
    pcap = tmp_path / "run.pcapng"
    tap = Recorder()
    # The proxy's port is bound before the capture starts (its filter names it) and kept until
    # the proxy serves on it: no other program can take it in between.
    with socket.socket() as front:
        front.bind(("127.0.0.1", 0))
        front.listen()
        ports = {mosquitto.port, front.getsockname()[1]}
        # The product's live capture (see loopback_capture): a kernel buffer a busy machine
        # does not overflow, proven to capture before the run and to hold every packet after.
        with loopback_capture(pcap, ports) as capture:
            run(_scenario(mosquitto.port, front, tap))
    from_tap = _by_connection(tap, ports)
    from_pcap = _by_connection(list(iter_events(str(pcap), ports=tuple(ports))), ports)
    lost = f"tcpdump: {capture.dropped} packets dropped by kernel"
    assert len(from_tap) == 8 and set(from_tap) <= set(from_pcap), lost
    for key, packets in from_tap.items():
        assert from_pcap[key] == packets, (key, lost)
    assert sum(len(p) for p in from_tap.values()) >= 20
    opened = [e for e in tap if isinstance(e, ConnectionOpened)]
    closed = [e for e in tap if isinstance(e, ConnectionClosed)]
    assert len(opened) == len(closed) == 4


async def _scenario(port: int, front: socket.socket, tap: Recorder) -> None:
    """Every QoS both ways in MQTT 5 with properties, then a resend after a cut (3.1.1)."""
    topic = unique_topic("tap-pcap")
    async with Client("127.0.0.1", port, client_id="qi-tap-sub", version=5, tap=tap) as sub:
        await sub.subscribe(f"{topic}/#", 2)
        async with Client("127.0.0.1", port, client_id="qi-tap-pub", version=5,
                          tap=tap) as pub:
            for qos in (0, 1, 2):
                await pub.publish(f"{topic}/{qos}", b"x" * (qos * 200), qos,
                                  properties=Properties.of(user_property=[("q", str(qos))]))
            await take(sub, 3)
        async with Proxy(port, sock=front) as proxy:
            resender = Client("127.0.0.1", proxy.port, client_id="qi-tap-resend",
                              clean_start=False, reconnect=Backoff(0.05, 0.2), tap=tap)
            await resender.connect()
            proxy.swallow_b2c = True
            pending = resender.publish_nowait(f"{topic}/resent", "again", 1)
            await take(sub, 1)
            proxy.swallow_b2c = False
            proxy.cut()
            await asyncio.wait_for(pending.future, 5)
            await resender.disconnect()

"""Our client with mosquitto's own clients, through mosquitto: our publisher to mosquitto_sub,
mosquitto_pub to our subscriber, at every QoS and in MQTT 3.1.1 and 5.0."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from qosinspect.client import Client
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import require_tool

from ._util import run, take, unique_topic

pytestmark = pytest.mark.tools


async def _start_mosquitto_sub(port: int, topic: str, count: int,
                               version: str) -> asyncio.subprocess.Process:
    """mosquitto_sub on ``topic/#``, waited for until it printed the retained ``topic/ready``
    message published first: then it is subscribed (its debug lines are not flushed to a
    pipe, its messages are)."""
    async with Client("127.0.0.1", port, client_id=f"qi-ready-{uuid.uuid4().hex[:6]}") as c:
        await c.publish(f"{topic}/ready", "ready", 1, retain=True)
    proc = await asyncio.create_subprocess_exec(
        require_tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port), "-t", f"{topic}/#",
        "-q", "2", "-C", str(count + 1), "-v", "-V", version,
        "-i", f"qi-msub-{uuid.uuid4().hex[:6]}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(5):
            while not (await proc.stdout.readline()).startswith(f"{topic}/ready".encode()):
                if proc.stdout.at_eof():
                    raise AssertionError("mosquitto_sub ended before it was subscribed")
    except BaseException:
        await _stop(proc)
        raise
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_our_publisher_to_mosquitto_sub(mosquitto: Mosquitto, version: str) -> None:
    topic = unique_topic("to-msub")

    async def main() -> list[str]:
        proc = await _start_mosquitto_sub(mosquitto.port, topic, 3, version)
        try:
            async with Client("127.0.0.1", mosquitto.port, client_id="qi-pub-interop",
                              version=5 if version == "mqttv5" else 4) as pub:
                for qos in (0, 1, 2):
                    await pub.publish(f"{topic}/q{qos}", f"hello {qos}", qos)
            assert proc.stdout is not None
            lines: list[str] = []
            async with asyncio.timeout(5):
                while len(lines) < 3:
                    line = (await proc.stdout.readline()).decode()
                    if line.startswith(topic):
                        lines.append(line.rstrip("\n"))
            assert await asyncio.wait_for(proc.wait(), 5) == 0     # -C 3 reached
            return lines
        finally:
            await _stop(proc)

    assert run(main()) == [f"{topic}/q{q} hello {q}" for q in (0, 1, 2)]


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_pub_to_our_subscriber(mosquitto: Mosquitto, version: str) -> None:
    topic = unique_topic("from-mpub")

    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id="qi-sub-interop",
                          version=5 if version == "mqttv5" else 4) as sub:
            await sub.subscribe(f"{topic}/#", 2)
            for qos in (0, 1, 2):
                proc = await asyncio.create_subprocess_exec(
                    require_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p",
                    str(mosquitto.port), "-t", f"{topic}/q{qos}",
                    *(["-n"] if qos == 0 else ["-m", f"m{qos}"]), "-q",
                    str(qos), "-V", version,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                try:
                    assert await asyncio.wait_for(proc.wait(), 5) == 0
                finally:
                    await _stop(proc)
            got = await take(sub, 3)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
            (f"{topic}/q0", b"", 0, False), (f"{topic}/q1", b"m1", 1, False),
            (f"{topic}/q2", b"m2", 2, False)]               # -n: the empty message

    run(main())

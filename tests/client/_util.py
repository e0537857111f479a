"""Helpers for the client tests: a bounded asyncio runner, a small TCP proxy that can cut
connections or swallow one direction, and bounded waits on a client. Everything binds
127.0.0.1. (mosquitto and the TLS certificates come from :mod:`qosinspect.testing`.)"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Proxy", "Recorder", "run", "take", "unique_topic", "until"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def unique_topic(name: str = "t") -> str:
    return f"qi-test/{name}/{uuid.uuid4().hex[:8]}"


class Proxy:
    """A TCP proxy in the test's event loop, in front of ``127.0.0.1:target``.

    ``swallow_b2c`` / ``swallow_c2b`` drop the bytes of one direction (the peer never sees an
    acknowledgement); :meth:`cut` aborts every connection, as a failing network would.
    """

    def __init__(self, target: int, port: int = 0, *, sock: socket.socket | None = None
                 ) -> None:
        self.target = target
        self.swallow_b2c = False
        self.swallow_c2b = False
        self.port = port
        #: A listening socket to serve on instead of ``port`` (bound earlier by the test).
        self.sock = sock
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        if self.sock is not None:
            self._server = await asyncio.start_server(self._accept, sock=self.sock)
        else:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer, "c2b"),
                             self._pipe(up_reader, writer, "b2c"), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        try:
            while data := await reader.read(65536):
                if not getattr(self, f"swallow_{direction}"):
                    writer.write(data)
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()


# -- waiting on a client, bounded ------------------------------------------------------------------

async def take(client: Any, n: int, timeout: float = 5.0) -> list[Any]:
    """The next ``n`` messages of ``client`` (TimeoutError if they do not come in time)."""
    out: list[Any] = []
    if n <= 0:
        return out
    async with asyncio.timeout(timeout):
        async for message in client.messages():
            out.append(message)
            if len(out) >= n:
                break
    return out


async def until(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition()`` every few milliseconds until it is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.005)


class Recorder(list[Any]):
    """A tap that keeps every event; helpers pick the MQTT packets out."""

    def __call__(self, event: Any) -> None:
        self.append(event)

    def packets(self, direction: str | None = None, kind: type | None = None) -> list[Any]:
        from qosinspect.events import MqttPacketEvent
        return [e.packet for e in self if isinstance(e, MqttPacketEvent)
                and (direction is None or e.direction == direction)
                and (kind is None or isinstance(e.packet, kind))]

"""A scripted MQTT peer for proxy tests: sends exact packets, reads exact packets.

Not a client (the product's client is :class:`qosinspect.Client`): it has no session, no
retries, no timers; a test says which bytes go out and checks which packets come back, so it
can see precisely what the fault proxy did to each one.
"""

from __future__ import annotations

import asyncio
import contextlib

from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import Connect, Packet, Subscribe, Subscription

__all__ = ["ScriptedPeer"]


class ScriptedPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 version: int = 4) -> None:
        self.reader = reader
        self.writer = writer
        self.version = version
        self.decoder = StreamDecoder(version)
        self.inbox: list[Packet] = []

    @classmethod
    async def connect(cls, port: int, client_id: str, *, version: int = 4,
                      clean: bool = True, subscribe: str | None = None,
                      qos: int = 2) -> ScriptedPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer, version)
        peer.send(Connect(client_id, version, clean, 30))
        await peer.expect("ConnAck")
        if subscribe is not None:
            peer.send(Subscribe(1, (Subscription(subscribe, qos),)))
            await peer.expect("SubAck")
        return peer

    def send(self, *packets: Packet) -> None:
        self.writer.write(b"".join(encode(p, self.version) for p in packets))

    async def read(self, timeout: float = 2.0) -> Packet | None:
        """The next packet, or None at end of stream or after ``timeout`` seconds."""
        while not self.inbox:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except (TimeoutError, ConnectionError):
                return None
            if not data:
                return None
            for item in self.decoder.feed(data):
                self.inbox.append(item)  # type: ignore[arg-type]
        return self.inbox.pop(0)

    async def expect(self, name: str, timeout: float = 2.0) -> Packet:
        packet = await self.read(timeout)
        assert packet is not None and type(packet).__name__ == name, (name, packet)
        return packet

    async def collect(self, timeout: float = 0.3) -> list[Packet]:
        """Everything that arrives until ``timeout`` seconds of silence."""
        out = []
        while (packet := await self.read(timeout)) is not None:
            out.append(packet)
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

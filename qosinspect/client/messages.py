"""The values the client hands to the application: received messages, publish results, and
the small queue that carries them (it ends when the client closes, and pushes back when full).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..mqtt.packets import Publish
from ..mqtt.properties import Properties
from ..mqtt.qos import Completed

__all__ = ["Inbox", "Message", "PendingPublish", "PublishResult"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Message:
    """An application message received from the broker."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: Properties
    ts_ns: int
    conn_id: int


@dataclass(frozen=True, slots=True)
class PublishResult:
    """How a publish ended.

    ``reason_code`` is the PUBACK's for QoS 1; for QoS 2 the PUBCOMP's when it is an error
    (0x92), else the PUBREC's, which is the one that says something (0x10: no matching
    subscribers, or the refusal that ended the flow); 0 for QoS 0. ``pubrec_reason_code`` keeps
    the PUBREC's. ``sends`` counts transmissions (more than 1 when resent after a
    reconnection).
    """

    packet_id: int | None
    qos: int
    reason_code: int
    t_publish_ns: int
    t_done_ns: int
    sends: int = 1
    pubrec_reason_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason_code < 0x80

    @property
    def latency_ns(self) -> int:
        return self.t_done_ns - self.t_publish_ns


class PendingPublish:
    """A publish in progress: ``await`` it for the :class:`PublishResult`."""

    def __init__(self, publish: Publish, future: asyncio.Future[PublishResult]) -> None:
        self.publish = publish
        self.future = future
        #: Known once the PUBLISH went out (QoS 1/2).
        self.packet_id: int | None = None

    def done(self) -> bool:
        return self.future.done()

    def __await__(self) -> Generator[Any, None, PublishResult]:
        return self.future.__await__()

    def _complete(self, c: Completed, pubrec: int | None = None) -> None:
        if self.future.done():
            return
        code = int(c.reason_code)
        if pubrec is not None and code < 0x80:
            code = pubrec
        self.future.set_result(PublishResult(c.publish.packet_id, c.publish.qos, code,
                                             c.t_first_ns, c.t_done_ns, c.sends, pubrec))


class Inbox(Generic[T]):
    """A FIFO that ends: ``get`` returns None once ended and empty. ``put`` waits while full
    (backpressure); ``put_nowait`` drops the oldest instead."""

    def __init__(self, maxsize: int) -> None:
        self.items: deque[T] = deque()
        self.maxsize = max(1, maxsize)
        self.ended = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()

    async def put(self, item: T) -> None:
        while len(self.items) >= self.maxsize and not self.ended:
            self._writable.clear()
            await self._writable.wait()
        self.items.append(item)
        self._readable.set()

    def put_nowait(self, item: T) -> None:
        if len(self.items) >= self.maxsize:
            self.items.popleft()
        self.items.append(item)
        self._readable.set()

    async def get(self) -> T | None:
        while not self.items:
            if self.ended:
                return None
            self._readable.clear()
            await self._readable.wait()
        item = self.items.popleft()
        self._writable.set()
        return item

    def end(self) -> None:
        self.ended = True
        self._readable.set()
        self._writable.set()

"""The client for blocking code: :class:`BlockingClient` runs a :class:`~.client.Client` on a
private event loop in a daemon thread (never the global loop, never the caller's), so scripts,
paho-style code and notebooks that do not ``await`` can use it::

    with BlockingClient("127.0.0.1", 1883, version=5) as c:
        c.subscribe("sensors/#", 1)
        c.publish("sensors/t", "21.5", qos=2)
        for message in c.messages(timeout=5):
            print(message.topic, message.payload)

Every method waits for its result; ``timeout`` bounds the wait (TimeoutError). Callbacks given
to the client (``tap``, ``on_message``, ``on_reconnect``) run on the client's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from .client import Client, Message, PublishResult
from .protocol import Connected

__all__ = ["BlockingClient"]

T = TypeVar("T")


class BlockingClient:
    """A :class:`Client` behind blocking methods; arguments as for :class:`Client`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.client = Client(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="qosinspect-client", daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def __enter__(self) -> BlockingClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout: float | None = None) -> Connected:
        return self._call(self.client.connect(), timeout)

    def publish(self, topic: str, payload: bytes | str | None = b"", qos: int = 0,
                retain: bool = False, *, timeout: float | None = None,
                **kwargs: Any) -> PublishResult:
        return self._call(self.client.publish(topic, payload, qos, retain, **kwargs), timeout)

    def subscribe(self, topics: Any, qos: int = 0, *, timeout: float | None = None,
                  **kwargs: Any) -> tuple[int, ...]:
        return self._call(self.client.subscribe(topics, qos, **kwargs), timeout)

    def unsubscribe(self, topics: str | list[str], *, timeout: float | None = None,
                    **kwargs: Any) -> tuple[int, ...]:
        return self._call(self.client.unsubscribe(topics, **kwargs), timeout)

    def get_message(self, timeout: float | None = None) -> Message | None:
        """The next message (None once closed); TimeoutError after ``timeout`` seconds."""
        return self._call(self.client.get_message(timeout))

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Messages as they come; stops when none came for ``timeout`` seconds or the client
        closed."""
        while True:
            try:
                message = self.get_message(timeout)
            except TimeoutError:
                return
            if message is None:
                return
            yield message

    def disconnect(self, timeout: float | None = None) -> None:
        self._call(self.client.disconnect(), timeout)

    def close(self) -> None:
        """Disconnect (if connected), stop the loop and join its thread."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self.client.disconnect(), 10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()

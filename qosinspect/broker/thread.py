"""A :class:`~.server.BrokerServer` on its own event loop in a background thread.

For blocking code (paho-mqtt scripts, tests, a notebook that should not await)::

    with BrokerThread(ServerConfig([Listener("127.0.0.1", 0)])) as broker:
        client.connect("127.0.0.1", broker.port)

The loop is private to the thread (never the global one), the broker is listening when
:meth:`BrokerThread.start` returns, and :meth:`BrokerThread.stop` closes it and joins the
thread. The tap, if any, is called on the broker's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .auth import Authenticator
from .server import BrokerServer, ServerConfig, Tap

__all__ = ["BrokerThread"]

T = TypeVar("T")


class BrokerThread:
    """Run a BrokerServer in a daemon thread; ``with`` starts and stops it."""

    def __init__(self, config: ServerConfig | None = None, *, auth: Authenticator | None = None,
                 tap: Tap | None = None, verbose: bool = False,
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        self.config = config or ServerConfig()
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self.server = BrokerServer(self.config, auth=auth, tap=tap, verbose=verbose)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qosinspect-broker",
                                        daemon=True)

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:   # reported to the caller of start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.close())
            loop.close()

    def start(self, timeout: float = 30.0) -> BrokerThread:
        """Start the thread; return once every listener is listening (or raise its error)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the broker did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.server.addresses

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run ``fn(*args)`` on the broker's loop and return its result (to inspect state)."""
        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Close the broker and join the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

"""Test harness: our broker on its own event loop in a background thread, real peers in front.

paho-mqtt and the mosquitto command-line clients are blocking, so the broker runs in a thread
with its own loop (never a global one) and is stopped and joined at the end of the test.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qosinspect.broker.auth import Authenticator
from qosinspect.broker.server import BrokerServer, Listener, ServerConfig, Tap

__all__ = ["BrokerThread", "free_port", "run_broker", "wait_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


class BrokerThread:
    """A BrokerServer running on a private loop in a daemon thread."""

    def __init__(self, config: ServerConfig, auth: Authenticator | None = None,
                 tap: Tap | None = None) -> None:
        self.config = config
        self.auth = auth
        self.tap = tap
        self.loop = asyncio.new_event_loop()
        self.server: BrokerServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = BrokerServer(self.config, auth=self.auth, tap=self.tap)
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:   # reported to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close())
        self.loop.close()

    def start(self) -> BrokerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the broker's loop and return its result (for inspection)."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn(*args))
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)
        return box[0] if box else None

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


@contextmanager
def run_broker(*, auth: Authenticator | None = None, tap: Tap | None = None,
               listeners: list[Listener] | None = None, **config: Any) -> Iterator[BrokerThread]:
    cfg = ServerConfig(listeners=listeners or [Listener("127.0.0.1", 0)], **config)
    broker = BrokerThread(cfg, auth, tap).start()
    try:
        yield broker
    finally:
        broker.stop()


def mosquitto_sub(port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mosquitto_pub(port: int, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)

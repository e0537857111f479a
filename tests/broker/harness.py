"""Test harness: our broker in a background thread (its own loop), real peers in front of it.

paho-mqtt and the mosquitto command-line clients are blocking, so the broker runs in a
:class:`~qosinspect.broker.BrokerThread` that is stopped and joined at the end of each test.
Also: a tiny raw MQTT client over a socket, for tests that need exact bytes and timing
control (holding an acknowledgement, sending garbage), and helpers to wait for paho.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qosinspect.broker import Authenticator, BrokerConfig, BrokerThread, Listener, ServerConfig
from qosinspect.broker.server import Tap
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import Connect, Packet

#: The ``qosinspect`` command of the venv running the tests.
QOSINSPECT = str(Path(sys.executable).parent / "qosinspect")

__all__ = ["QOSINSPECT", "RawClient", "mosquitto_pub", "mosquitto_sub", "paho_client",
           "run_broker", "wait_for"]


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def run_broker(*, auth: Authenticator | None = None, tap: Tap | None = None,
               listeners: list[Listener] | None = None, engine: BrokerConfig | None = None,
               **config: Any) -> Iterator[BrokerThread]:
    """A broker on a free 127.0.0.1 port (anonymous allowed unless ``auth`` says otherwise)."""
    cfg = ServerConfig(listeners=listeners or [Listener("127.0.0.1", 0)],
                       engine=engine or BrokerConfig(), **config)
    broker = BrokerThread(cfg, auth=auth or Authenticator(allow_anonymous=True), tap=tap)
    errors: list[dict[str, Any]] = []
    broker.loop.set_exception_handler(lambda loop, context: errors.append(context))
    broker.errors = errors  # type: ignore[attr-defined]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
    # anything the event loop had to catch, or the server caught, is a bug in the broker
    assert not errors, f"unhandled errors on the broker's loop: {errors}"
    assert broker.server.internal_errors == 0, "internal errors (see the log)"


def mosquitto_sub(port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mosquitto_pub(port: int, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


class RawClient:
    """A blocking MQTT client on a plain socket that sends exactly what it is told."""

    def __init__(self, port: int, host: str = "127.0.0.1", version: int = 4,
                 timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.version = version
        self.decoder = StreamDecoder(version)
        self.inbox: list[Packet] = []

    def send(self, packet: Packet) -> None:
        self.sock.sendall(encode(packet, self.version))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str, **kw: Any) -> Packet:
        self.send(Connect(client_id, self.version, **kw))
        return self.recv()

    def recv(self, timeout: float = 5.0) -> Packet:
        """The next packet; AssertionError if none comes in time or the socket closes."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no packet from the broker in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError("the broker closed the connection")
            self.inbox.extend(self.decoder.feed(data))  # type: ignore[arg-type]
        return self.inbox.pop(0)

    def recv_n(self, n: int, timeout: float = 5.0) -> list[Packet]:
        return [self.recv(timeout) for _ in range(n)]

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the broker closed the connection (packets before it are kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return True
            if not data:
                return True
            with contextlib.suppress(Exception):
                self.inbox.extend(self.decoder.feed(data))  # type: ignore[arg-type]
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def paho_client(client_id: str, version: int = 4, **kw: Any) -> Any:
    """A paho-mqtt 2.x client (``version`` 3, 4 or 5) with a message list and events."""
    import paho.mqtt.client as mqtt

    protocol = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=protocol, **kw)
    client.received = []                 # type: ignore[attr-defined]
    client.connected_event = threading.Event()   # type: ignore[attr-defined]
    client.connack = None                # type: ignore[attr-defined]
    client.subacks = []                  # type: ignore[attr-defined]

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.connack = (flags, reason, props)
        c.connected_event.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        c.received.append(msg)

    def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        c.subacks.append((mid, reasons))

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    return client

"""One blocking MQTT connection for the active probes: a socket (TCP or TLS), the project's
encoder and lenient stream decoder, and a deadline on every wait.

The probes need to see exactly what a broker does with one packet (a CONNECT with no user
name, a SUBSCRIBE to ``#``, an invalid byte), including when it closes the connection without
a word, so they speak MQTT through the sans-I/O codec over a plain socket rather than through
a client that reconnects, retries and hides those events. Every wait is bounded by a timeout:
a probe never hangs on a broker that does not answer.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

from ..mqtt.encoder import encode
from ..mqtt.framing import StreamDecoder
from ..mqtt.packets import ConnAck, Connect, Packet

__all__ = ["Closed", "Link", "Target"]


@dataclass(frozen=True)
class Target:
    """A broker listener: ``tls`` with the context to reach it (None: plain TCP)."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


class Closed(Exception):
    """The broker closed the connection (or it could not be made)."""


class Link:
    """A connection to ``target`` speaking MQTT ``version``; use as a context manager."""

    def __init__(self, target: Target, version: int = 4, timeout: float = 3.0) -> None:
        self.target = target
        self.version = version
        self.timeout = timeout
        self.decoder = StreamDecoder(version, lenient=True)
        self.pending: list[Packet] = []
        self.closed = False
        try:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
            if target.tls is not None:
                sock = target.tls.wrap_socket(sock, server_hostname=target.host)
        except (OSError, ssl.SSLError) as exc:
            raise Closed(f"cannot connect: {exc}") from None
        self.sock = sock

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def send(self, packet: Packet) -> None:
        self.send_bytes(encode(packet, self.version))

    def send_bytes(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.closed = True
            raise Closed(str(exc)) from None

    def recv(self, timeout: float | None = None) -> Packet | None:
        """The next packet, or None when ``timeout`` passes; :class:`Closed` at end of stream."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                return None
            except OSError as exc:
                self.closed = True
                raise Closed(str(exc)) from None
            if not data:
                self.closed = True
                raise Closed("closed by the broker")
            self.pending += [p for p in self.decoder.feed(data) if not hasattr(p, "offset")]
        return self.pending.pop(0)

    def wait_closed(self, timeout: float) -> bool:
        """True if the broker closes the connection within ``timeout`` (packets are read and
        dropped meanwhile)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.recv(deadline - time.monotonic())
        except Closed:
            return True
        return False

    def connect(self, packet: Connect) -> ConnAck | None:
        """Send CONNECT and wait for CONNACK (None: no answer, or closed without one)."""
        try:
            self.send(packet)
            while True:
                p = self.recv()
                if p is None or isinstance(p, ConnAck):
                    return p
        except Closed:
            return None

"""One broker's traffic out of a capture that holds several (``--broker ADDR[:PORT]``).

A broker is a server endpoint: an address and a port. A capture from a laptop may hold its local
mosquitto, a cloud broker and a public test broker at once; ``--broker`` keeps the connections to
one of them (every event that belongs to a connection: packets, opens, closes, TCP evidence,
anomalies) and the events that belong to none (notes about the capture itself), so that every
command (``decode``, ``report``, ``flows`` ...) sees the same subset. Pure: events in, events out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..events import Endpoint, Event, TcpEvidence

__all__ = ["BrokerSpec", "only_broker", "parse_broker"]


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """An address, and a port or None (any port of that address)."""

    host: str
    port: int | None = None

    def matches(self, endpoint: Endpoint) -> bool:
        return endpoint.host == self.host and (self.port is None or endpoint.port == self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def parse_broker(text: str) -> BrokerSpec:
    """``10.0.0.5``, ``10.0.0.5:1883``, ``::1``, ``[::1]:1883``; ValueError otherwise."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not ADDR[:PORT]")
        return BrokerSpec(host, _port(rest[1:], text) if rest else None)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if not host:
            raise ValueError(f"{text!r} is not ADDR[:PORT]")
        return BrokerSpec(host, _port(port, text))
    if not value:
        raise ValueError("an empty broker address")
    return BrokerSpec(value)  # a bare IPv4 address, a name, or a bare IPv6 address


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)


class only_broker:  # used like a function: an iterator that keeps the stream's summary
    """The events of ``events`` that belong to a connection to ``spec``'s broker, or to no
    connection. ``summary`` is the wrapped stream's, when it has one."""

    def __init__(self, events: Iterable[Event], spec: BrokerSpec) -> None:
        self._events = events
        self._spec = spec
        self.summary: Any = getattr(events, "summary", None)

    @property
    def position(self) -> tuple[int, int]:
        """The wrapped stream's (bytes read, bytes in all), for a progress bar."""
        pos: tuple[int, int] = getattr(self._events, "position", (0, 0))
        return pos

    def __iter__(self) -> Iterator[Event]:
        matches = self._spec.matches
        for ev in self._events:
            if type(ev) is TcpEvidence:  # a connection's, named by its two ends
                if matches(ev.src) or matches(ev.dst):
                    yield ev
                continue
            conn = getattr(ev, "conn", None)
            # (a connection's sides may be learnt late: its current ConnectionInfo decides)
            if conn is None or matches(conn.broker):
                yield ev

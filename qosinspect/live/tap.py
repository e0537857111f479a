"""``qosinspect broker --watch``: the built-in broker's own events through the live core.

The broker's tap (:mod:`qosinspect.broker.server`) hands over, on its event loop, the events the
capture decoder would make of its traffic (ConnectionOpened, MqttPacketEvent both ways,
ConnectionClosed), stamped with ``time.time_ns()``; here they go into the same
:class:`~.core.LiveCore` as a capture's. A tap must be quick and never raise: :meth:`TapWatch.feed`
only feeds the core and writes what became notable; a bad write (a closed pipe) turns the watch
off rather than breaking the broker. The snapshots come from :meth:`TapWatch.ticker`, a task on
the broker's loop, at the interval of the wall clock, which is also the tap's packet time.
With ``--record-dir``, :class:`TapFrames` makes frames of the tap's packets for the flight
recorder (the tap has no bytes from the wire: they are encoded again, in synthetic TCP).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ..analysis.api import Analysis
from ..errors import QosinspectError
from ..events import ConnectionClosed, ConnectionOpened, Event, MqttPacketEvent
from ..mqtt import Direction, encode
from ..traffic.pcapng import SyntheticTcp
from .core import LiveCore
from .recorder import FlightRecorder

__all__ = ["TapFrames", "TapWatch"]

_LINKTYPE_ETHERNET = 1


class TapWatch:
    """The tap callable (:meth:`feed`), its ticker, and the analysis at the end."""

    def __init__(self, core: LiveCore, emit: Callable[[dict[str, Any]], None], *,
                 name: str = "broker tap") -> None:
        self.core = core
        self.emit = emit
        self.name = name
        self.broken: BaseException | None = None
        #: Also gets every event, before the core (``--record-dir``: :class:`TapFrames`).
        self.on_event: Callable[[Event], None] | None = None

    def _out(self, items: list[dict[str, Any]]) -> None:
        if self.broken is not None:
            return
        try:
            for item in items:
                self.emit(item)
        except (OSError, ValueError) as exc:   # the reader went away: stop writing
            self.broken = exc

    def feed(self, ev: Event) -> None:
        """The broker's tap."""
        if self.on_event is not None:
            self.on_event(ev)
        self._out(self.core.feed(ev))

    async def ticker(self, interval_s: float) -> None:
        """A snapshot every ``interval_s`` while the broker runs (cancel it to stop)."""
        while True:
            await asyncio.sleep(interval_s)
            nxt = self.core.next_tick_ns
            now = time.time_ns()
            if nxt is not None and now >= nxt:
                self._out(self.core.tick(now))

    def finish(self) -> Analysis:
        """The last events and snapshot; the analysis of everything the tap handed over."""
        items, result = self.core.finish()
        self._out(items)
        return Analysis(result, source=self.name)


class TapFrames:
    """The tap's events as frames for the flight recorder (``broker --watch --record-dir``).

    The broker hands over packets, not the bytes on the wire, so each packet is encoded again
    (the codec's :func:`~qosinspect.mqtt.encode`, in the connection's version) and framed as the
    fault proxy's synthetic capture frames bytes (:class:`~qosinspect.traffic.pcapng.
    SyntheticTcp`: a handshake when a connection opens, one segment per packet, FIN or RST at
    its end), with the tap's time. The recorder gets the events numbered with their frames (so
    it keeps each connection's CONNECT and CONNACK); the core gets them as they came.
    """

    def __init__(self, recorder: FlightRecorder) -> None:
        self.recorder = recorder
        self.tcp = SyntheticTcp(self._frame)
        self._keys: dict[int, int] = {}
        self.n = 0

    def _frame(self, ts_ns: int, data: bytes) -> None:
        self.n += 1
        self.recorder.frame(self.n, ts_ns, _LINKTYPE_ETHERNET, data, len(data))

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, ConnectionOpened):
            self._keys[ev.conn.conn_id] = self.tcp.opened(ev.ts_ns, ev.conn.client,
                                                          ev.conn.broker)
            ev = dataclasses.replace(ev, frame=self.n)
        elif isinstance(ev, MqttPacketEvent) and ev.direction is not None:
            key = self._keys.get(ev.conn.conn_id)
            if key is not None:
                try:
                    data = encode(ev.packet, ev.version or 4)
                except (QosinspectError, ValueError):     # never raise in the tap
                    data = b""
                if data:
                    self.tcp.data(key, ev.ts_ns, ev.direction, data)
                    ev = ev._replace(frame=self.n, first_frame=self.n)
        elif isinstance(ev, ConnectionClosed):
            key = self._keys.pop(ev.conn.conn_id, None)
            if key is not None:
                self.tcp.closed(key, ev.ts_ns, "rst" if ev.how == "rst" else "fin",
                                ev.closed_by or Direction.C2B)
        self.recorder.event(ev)

"""``qosinspect broker --watch``: the built-in broker's own events through the live core.

The broker's tap (:mod:`qosinspect.broker.server`) hands over, on its event loop, the events the
capture decoder would make of its traffic (ConnectionOpened, MqttPacketEvent both ways,
ConnectionClosed), stamped with ``time.time_ns()``; here they go into the same
:class:`~.core.LiveCore` as a capture's. A tap must be quick and never raise: :meth:`TapWatch.feed`
only feeds the core and writes what became notable; a bad write (a closed pipe) turns the watch
off rather than breaking the broker. The snapshots come from :meth:`TapWatch.ticker`, a task on
the broker's loop, at the interval of the wall clock, which is also the tap's packet time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..analysis.api import Analysis
from ..events import Event
from .core import LiveCore

__all__ = ["TapWatch"]


class TapWatch:
    """The tap callable (:meth:`feed`), its ticker, and the analysis at the end."""

    def __init__(self, core: LiveCore, emit: Callable[[dict[str, Any]], None], *,
                 name: str = "broker tap") -> None:
        self.core = core
        self.emit = emit
        self.name = name
        self.broken: BaseException | None = None

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

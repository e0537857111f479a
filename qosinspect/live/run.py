"""The watch loop: a source's events through the live core, notable events out, then the report.

The driver of :class:`~.core.LiveCore`, and the only part of ``watch`` that reads the clock:

* **Stopping.** The end of the input, ``--duration`` (wall-clock seconds) or Ctrl-C: a first
  SIGINT asks for the end (a second one interrupts for good). A pipe or a followed file is then
  cut at the next read (a record half read is left out); a capture tool is asked to stop and its
  pipe read to the end, so what it captured is all analysed (bounded: after :data:`DRAIN_S`
  the pipe is cut too).
* **Time.** The core runs on packet time. While the input is silent, the loop advances it by the
  wall-clock time since the last packet arrived, so a snapshot still comes every interval and a
  stalled handshake is said although no packet follows it.
* **The end.** The final notable events and snapshot, then the report of everything seen, made
  by :func:`qosinspect.report.text.write_report` from the core's correlator: the report
  ``qosinspect report`` prints for the same packets (with ``--write``, its ``source`` is the
  file written, so the two JSON documents are equal field for field).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..analysis.api import Analysis, relaxed_gc
from ..errors import CaptureError
from ..events import Event
from .core import LiveCore
from .sources import PacketSource

__all__ = ["DRAIN_S", "Watch"]

#: Seconds a capture tool has, once asked to stop, to close its pipe.
DRAIN_S = 5.0
_CHECK_EVERY = 256


def _tee(events: Iterator[Event], also: Callable[[Event], None]) -> Iterator[Event]:
    """``events``, each handed to ``also`` first (the flight recorder)."""
    for ev in events:
        also(ev)
        yield ev


class Watch:
    """One run of ``watch``: ``source`` into ``core``; every notable event and snapshot goes to
    ``emit``. :meth:`run` returns the :class:`~qosinspect.analysis.api.Analysis` of it all."""

    def __init__(self, source: PacketSource, core: LiveCore,
                 emit: Callable[[dict[str, Any]], None], *, duration_s: float | None = None,
                 report_source: str | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.source = source
        self.core = core
        self.emit = emit
        self.duration_s = duration_s
        self.report_source = report_source if report_source is not None else source.name
        #: Also gets every event (the flight recorder keeps the handshakes' frames).
        self.on_event = on_event
        self._stop_asked: float | None = None
        self._deadline: float | None = None
        self._last_arrival = time.monotonic()
        self._last_ts: int | None = None

    # -- stopping ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """End the run soon (Ctrl-C, ``--duration``, a test)."""
        if self._stop_asked is None:
            self._stop_asked = time.monotonic()
            self.source.request_stop()

    def _should_stop(self) -> bool:
        """Asked every few hundred events and while the input is silent: also the moment to
        take the source's drop count (the next snapshot says it)."""
        drops = self.source.poll_drops()
        if drops is not None:
            self.core.drops = drops
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.request_stop()
        return self._stop_asked is not None

    def _stop(self) -> bool:
        """The stream's ``stop``: cut it now (a pipe, a file) or once the tool had its time."""
        if not self._should_stop():
            return False
        if self.source.drains:
            assert self._stop_asked is not None
            return time.monotonic() - self._stop_asked > DRAIN_S
        return True

    def _idle(self) -> None:
        """No byte for a while: a snapshot on time, packet time advanced by the wall clock."""
        self._should_stop()
        if self._last_ts is None:
            return
        now = self._last_ts + int((time.monotonic() - self._last_arrival) * 1e9)
        nxt = self.core.next_tick_ns
        if nxt is not None and now >= nxt:
            for item in self.core.tick(now):
                self.emit(item)

    @contextlib.contextmanager
    def _sigint(self) -> Iterator[None]:
        """A first Ctrl-C asks for the end; the second one is a KeyboardInterrupt."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def first(signum: int, frame: object) -> None:
            signal.signal(signal.SIGINT, previous)
            self.request_stop()

        previous = signal.signal(signal.SIGINT, first)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # -- the run -----------------------------------------------------------------------------

    def _loop(self, events: Iterator[Event]) -> None:
        """Events into the core until they end, what it says to ``emit``; between batches the
        arrival time (the idle clock) and whether to stop."""
        core, emit = self.core, self.emit
        while True:
            items, n = core.consume(events, _CHECK_EVERY)
            for item in items:
                emit(item)
            if not n:
                break
            self._last_arrival = time.monotonic()
            self._last_ts = core.now_ns
            self._should_stop()

    def run(self) -> Analysis:
        if self.duration_s is not None:
            self._deadline = time.monotonic() + self.duration_s
        core, emit = self.core, self.emit
        error: CaptureError | None = None
        summary = None
        with self._sigint():
            try:
                self.source.start()
                emit({"type": "start", **self.source.describe()})
                dec = self.source.open(self._stop, self._idle)
                summary = dec.summary
                try:
                    events = iter(dec)
                    if self.on_event is not None:
                        events = _tee(events, self.on_event)
                    with relaxed_gc():     # as report's analysis runs (see there)
                        self._loop(events)
                except CaptureError as exc:
                    if core.corr.n_events == 0:
                        raise
                    error = exc
            finally:
                self.source.finish()
        if self.source.drops is not None:   # the tool's final count
            core.drops = self.source.drops
        items, result = core.finish()
        for item in items:
            emit(item)
        return Analysis(result, source=self.report_source, capture_error=error,
                        capture_summary=summary)

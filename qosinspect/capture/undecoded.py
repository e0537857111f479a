"""TCP streams that carried data and were not decoded: counted, never dropped in silence.

Why: a stream the decoder did not take (no CONNECT at its start on a port MQTT is not expected
on, no run of MQTT packets in a mid-stream capture, detection switched off) used to vanish; a
capture with four MQTT streams on port 17501 reported one connection and said nothing about the
rest. Each such stream with data now becomes an :class:`~qosinspect.events.UndecodedStream`
(bytes, segments, frames, why, and the ``--port`` that would make the decoder take it), so the
report can count them and list the largest.

Bounded memory: a stream is counted while its tombstone lives (the reassembler forgets a dead
stream after ``dead_timeout_ns`` of silence, 120 s) and reported then, or at the end of the
capture. At most :data:`MAX_TRACKED` streams are counted at once; beyond, a stream is reported
at once with the bytes seen so far (``complete=False``), so a capture of 100,000 concurrent
streams holds no more than that many counters.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..events import Endpoint, UndecodedStream
from .records import Undecoded

__all__ = ["MAX_TRACKED", "UndecodedCount", "UndecodedTable"]

#: Streams counted at once (each costs about 200 bytes).
MAX_TRACKED = 10_000


class UndecodedCount:
    """The running count of one undecoded stream (shared by its two keys)."""

    __slots__ = ("client", "conn_id", "data_bytes", "first_frame", "first_ts", "keys",
                 "last_frame", "last_ts", "reason", "segments", "server", "sides_known")

    def __init__(self, conn_id: int, client: Endpoint, server: Endpoint, sides_known: bool,
                 frame: int, ts: int, reason: str) -> None:
        self.conn_id = conn_id
        self.client = client
        self.server = server
        self.sides_known = sides_known
        self.first_frame = self.last_frame = frame
        self.first_ts = self.last_ts = ts
        self.reason = reason
        self.segments = 0
        self.data_bytes = 0
        self.keys: tuple[bytes, ...] = ()

    def add(self, frame: int, ts: int, length: int) -> None:
        self.segments += 1
        self.data_bytes += length
        self.last_frame = frame
        self.last_ts = ts

    def record(self, complete: bool = True) -> Undecoded:
        """The record to report; the suggested port is the server's when the SYN told, else
        the lower of the two (services listen on the lower port in practice)."""
        port = (self.server.port if self.sides_known
                else min(self.client.port, self.server.port))
        return Undecoded(None, self.last_frame, self.first_ts, UndecodedStream(
            self.first_ts, self.conn_id, self.client, self.server, self.sides_known,
            self.data_bytes, self.segments, self.first_frame, self.last_frame, self.reason,
            port, complete))


class UndecodedTable:
    """The counters of streams not decoded, by TCP key (see the module docstring)."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._by_key: dict[bytes, UndecodedCount] = {}
        self._out: list[Undecoded] = []
        #: Streams reported early because the table was full.

    def get(self, key: bytes) -> UndecodedCount | None:
        return self._by_key.get(key)

    def track(self, keys: Iterable[bytes], count: UndecodedCount) -> None:
        """Count ``count``'s stream under its keys; when full, the oldest is reported now."""
        by_key = self._by_key
        if len(by_key) >= 2 * self.max_tracked:
            oldest = next(iter(by_key.values()))
            self._release(oldest, complete=False)
        count.keys = tuple(keys)
        for k in count.keys:
            by_key[k] = count

    def _release(self, count: UndecodedCount, complete: bool) -> None:
        by_key = self._by_key
        for k in count.keys:
            if by_key.get(k) is count:
                del by_key[k]
        if count.data_bytes:
            self._out.append(count.record(complete))

    def sweep(self, dead: dict[bytes, int]) -> list[Undecoded]:
        """Report the streams whose tombstones are gone from ``dead`` (swept as idle)."""
        gone = {id(c): c for k, c in self._by_key.items() if k not in dead}
        if gone:
            keep = {k: c for k, c in self._by_key.items() if id(c) not in gone}
            self._by_key = keep
            self._out += [c.record() for c in gone.values() if c.data_bytes]
        return self.take()

    def finish(self) -> list[Undecoded]:
        """End of capture: report every stream still counted, in order of first frame."""
        seen = {id(c): c for c in self._by_key.values()}
        self._by_key = {}
        self._out += [c.record() for c in sorted(seen.values(), key=lambda c: c.first_frame)
                      if c.data_bytes]
        return self.take()

    def take(self) -> list[Undecoded]:
        out, self._out = self._out, []
        return out

"""Streams the capture decoder did not decode: the count, the largest, and the table.

Why: nothing may be dropped in silence (issue 11 §4). The decoder reports every TCP stream that
carried data and was not decoded as an :class:`~qosinspect.events.UndecodedStream`; this module
turns those events into what a user acts on: how many, the largest by bytes with the ``--port``
that would decode them (the report), and one row per stream (the export).

:class:`UndecodedStreams` is a streaming aggregate in bounded memory (a count, a byte total and
a heap of the :data:`TOP` largest), so the report of a capture of 100,000 such streams holds 20
of them; :func:`undecoded_frame` is the full table, for ``export``. Pure: events in, numbers and
a DataFrame out; no clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..events import UndecodedStream

__all__ = ["SCHEMA", "TOP", "UndecodedStreams", "undecoded_frame"]

#: The largest undecoded streams the report lists.
TOP = 20

#: (name, dtype, meaning) of the table's columns, as in :mod:`.tables`.
SCHEMA: tuple[tuple[str, str, str], ...] = (
    ("conn_id", "int64", "TCP stream number among all streams (Wireshark's tcp.stream)"),
    ("t_first", "datetime64[ns, UTC]", "time of the stream's first frame"),
    ("client", "string", "client ip:port (from the SYN), else the first sender"),
    ("server", "string", "server ip:port (from the SYN), else the first sender's peer"),
    ("sides_known", "bool", "True when the SYN told client from server"),
    ("data_bytes", "int64", "payload bytes seen, both directions"),
    ("segments", "int64", "TCP segments seen, both directions (pure ACKs included)"),
    ("first_frame", "int64", "the stream's first frame"),
    ("last_frame", "int64", "the stream's last frame seen"),
    ("reason", "category", "not_mqtt, undecided or detection_off"),
    ("port", "int32", "the --port that would make the decoder take the stream"),
    ("complete", "bool", "False when reported before its end (too many streams at once)"),
)


class UndecodedStreams:
    """Count and rank undecoded streams as their events arrive (bounded memory)."""

    def __init__(self, top: int = TOP) -> None:
        self.top_n = top
        self.count = 0
        self.data_bytes = 0
        self._heap: list[tuple[int, int, UndecodedStream]] = []

    def add(self, ev: UndecodedStream) -> None:
        self.count += 1
        self.data_bytes += ev.data_bytes
        item = (ev.data_bytes, -ev.conn_id, ev)
        if len(self._heap) < self.top_n:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def consume(self, events: Iterable[Any]) -> UndecodedStreams:
        """Take the UndecodedStream events among ``events`` (others are ignored)."""
        for ev in events:
            if type(ev) is UndecodedStream:
                self.add(ev)
        return self

    def top(self) -> list[UndecodedStream]:
        """The largest streams by bytes, largest first (ties: lower stream number first)."""
        return [ev for _, _, ev in sorted(self._heap, key=lambda t: t[:2], reverse=True)]

    def summary(self) -> dict[str, Any]:
        """For ``report --format json``: the count, bytes, and the largest with their port."""
        return {"count": self.count, "data_bytes": self.data_bytes,
                "largest": [{"conn_id": e.conn_id, "client": str(e.client),
                             "server": str(e.server), "data_bytes": e.data_bytes,
                             "reason": e.reason, "port": e.port} for e in self.top()]}


def undecoded_frame(events: Iterable[Any]) -> pd.DataFrame:
    """One row per undecoded stream, in the order reported (see :data:`SCHEMA`)."""
    rows = [e for e in events if type(e) is UndecodedStream]
    cols: dict[str, Any] = {
        "conn_id": [e.conn_id for e in rows],
        "t_first": pd.to_datetime([e.ts_ns for e in rows], unit="ns", utc=True),
        "client": [str(e.client) for e in rows],
        "server": [str(e.server) for e in rows],
        "sides_known": [e.sides_known for e in rows],
        "data_bytes": [e.data_bytes for e in rows],
        "segments": [e.segments for e in rows],
        "first_frame": [e.first_frame for e in rows],
        "last_frame": [e.frame for e in rows],
        "reason": [e.reason for e in rows],
        "port": [e.port for e in rows],
        "complete": [e.complete for e in rows],
    }
    frame = pd.DataFrame(cols)
    return frame.astype({name: dtype for name, dtype, _ in SCHEMA})

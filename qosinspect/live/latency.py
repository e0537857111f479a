"""Latency per QoS and step, since the start and over the last seconds, in bounded memory.

Why DDSketch (the ``ddsketch`` package, already the broker's ``$SYS`` sketch): a watch runs for
days, so keeping every sample to take exact percentiles grows without end; a DDSketch answers any
quantile within a relative error (1 % here) in a few kB whatever the count, and sketches merge,
which is how the sliding window works: one sketch per second of *packet time* in a ring of
:data:`WINDOW_S` slots, merged when asked. A slot is reused (cleared) when its second comes round
again, so nothing is ever removed by scanning.

Time is the exchanges' own timestamps (when the step ended), never the clock.

Samples come in bulk (:meth:`LatencySketches.add_many`: the steps of the exchanges finished
since the last snapshot, as arrays): sorted, the values of one sketch bucket are one weighted
add (:func:`~qosinspect.analysis.aggregate.add_sorted`, what the report's series use), where
one ``DDSketch.add`` per value cost about a third of ``watch``'s CPU on the benchmark capture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ddsketch import DDSketch

from ..analysis.aggregate import add_sorted

__all__ = ["RELATIVE_ACCURACY", "WINDOW_S", "LatencySketches", "Quantiles", "quantiles_of"]

#: Seconds of the sliding window ("the last 10 s").
WINDOW_S = 10
#: Relative error of a quantile (0.01: a p99 of 20 ms is said as 19.8..20.2 ms).
RELATIVE_ACCURACY = 0.01
_NS = 1_000_000_000


@dataclass(frozen=True)
class Quantiles:
    """p50 and p99 in milliseconds (None without samples) and the sample count."""

    n: int
    p50: float | None
    p99: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "p50": self.p50, "p99": self.p99}


def quantiles_of(s: DDSketch) -> Quantiles:
    """p50 and p99 of a sketch, as the snapshots give them (rounded to the microsecond)."""
    n = int(s.count)
    if not n:
        return Quantiles(0, None, None)
    p50, p99 = s.get_quantile_value(0.5), s.get_quantile_value(0.99)
    return Quantiles(n, None if p50 is None else round(float(p50), 3),
                     None if p99 is None else round(float(p99), 3))


class LatencySketches:
    """Sketches of one series (a QoS and a step): since the start and per second of a ring.

    A second is *sealed* once a later one has samples: merged into the sketch of the sealed
    seconds then (a sample that still comes for it goes into both), so the view since the start
    merges that sketch and the one or two seconds not sealed yet, not the whole ring, at each
    snapshot. The sketches merge bucket counts, so the figures are those of one sketch of
    every sample, however they were grouped."""

    __slots__ = ("_older", "_ring", "_sealed", "_secs")

    def __init__(self) -> None:
        #: The samples of the sealed seconds, those that left the ring included.
        self._older = DDSketch(RELATIVE_ACCURACY)
        self._ring = [DDSketch(RELATIVE_ACCURACY) for _ in range(WINDOW_S)]
        self._secs = [-1] * WINDOW_S
        #: Whether each slot's samples are in :attr:`_older` too.
        self._sealed = [False] * WINDOW_S

    def add(self, ts_ns: int, value_ms: float) -> None:
        """A sample of ``value_ms`` taken at ``ts_ns`` (packet time). A DDSketch keeps positive
        values: a zero span (both packets in one frame) counts as 1 ns."""
        self.add_many(np.array([ts_ns], dtype=np.int64), np.array([value_ms]))

    def add_many(self, ts_ns: Any, values_ms: Any) -> None:
        """Samples ``values_ms`` (float64 array) taken at ``ts_ns`` (int64 array, packet time):
        the same sketches as :meth:`add` of each, a bucket at a time."""
        if not len(values_ms):
            return
        v = np.maximum(np.asarray(values_ms, dtype=np.float64), 1e-6)
        secs = np.asarray(ts_ns, dtype=np.int64) // _NS
        seconds = np.unique(secs).tolist()
        for sec in seconds:
            part = np.sort(v[secs == sec])
            i = sec % WINDOW_S
            if self._secs[i] != sec:
                if self._secs[i] > sec:     # older than the slot's second: out of the window
                    add_sorted(self._older, part, RELATIVE_ACCURACY)
                    continue
                if self._ring[i].count and not self._sealed[i]:
                    self._older.merge(self._ring[i])
                self._ring[i] = DDSketch(RELATIVE_ACCURACY)
                self._secs[i] = sec
                self._sealed[i] = False
            add_sorted(self._ring[i], part, RELATIVE_ACCURACY)
            if self._sealed[i]:             # a late sample of a sealed second: in both
                add_sorted(self._older, part, RELATIVE_ACCURACY)
        newest = max(self._secs)
        for i, sec in enumerate(self._secs):
            if sec < newest and not self._sealed[i]:
                if self._ring[i].count:
                    self._older.merge(self._ring[i])
                self._sealed[i] = True

    def since_start(self) -> Quantiles:
        merged = DDSketch(RELATIVE_ACCURACY)
        for sketch in (self._older, *(r for r, sealed in zip(self._ring, self._sealed,
                                                             strict=True) if not sealed)):
            if sketch.count:
                merged.merge(sketch)
        return quantiles_of(merged)

    def last(self, now_ns: int) -> Quantiles:
        """The samples of the :data:`WINDOW_S` seconds up to ``now_ns`` (its second included)."""
        now = now_ns // _NS
        merged = DDSketch(RELATIVE_ACCURACY)
        for sec, sketch in zip(self._secs, self._ring, strict=True):
            if now - WINDOW_S < sec <= now and sketch.count:
                merged.merge(sketch)
        return quantiles_of(merged)

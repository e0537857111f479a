"""What the report prints, folded from finished exchanges: exact counters and latency series.

Why: ``qosinspect report`` (and ``watch``, which runs for days) must run in bounded memory
whatever the capture's size, so a finished exchange is *folded* into an :class:`Aggregate` and
its row released instead of kept (issues 13 and 14). What is kept, per broker (its code) and
QoS:

* **Counters**, exact: every figure of the report's per-QoS tables (:data:`COUNTERS`).
* **Latency series** (:class:`Series`), per QoS and step (``total``: first PUBLISH to the end of a
  completed exchange; one per step of :data:`~.metrics.STEP_SPANS`), and the reconnection gaps.
  A series keeps its values *exactly* (integer ns) up to ``exact_up_to`` of them (65,536 by
  default: every shipped capture is below it, so their reports are unchanged to the digit); past
  it the values go into a DDSketch (the ``ddsketch`` package, relative accuracy 1 %), and the
  percentiles come from the sketch, within that relative error. Counts, min and max stay exact.

Percentiles are numpy's (``np.percentile``, linear interpolation between the two closest ranks).
From a sketch, the values at those two ranks are each read within the relative accuracy ``a``
(DDSketch's guarantee), and so is their interpolation (a convex combination of values of one
sign, each within ``a``, is within ``a`` of theirs): the stated error holds for the reported
p50/p90/p99, not only for one rank (``tests/analysis/test_aggregate.py`` checks it against numpy).

Aggregates **merge** (:meth:`Aggregate.merge`): counters add, series concatenate while the sum
stays within the bound, and become sketches past it, whose buckets add exactly; so a merge of
two aggregates equals the aggregate of both inputs (batch workers, ``compare``, ``watch``).

Values enter a sketch by bucket, not one by one: sorted, the values of one bucket (the same
``LogarithmicMapping`` key) form a run. The keys are numpy's logarithms put through the
mapping's own expression, and the mapping's ``key`` decides for the values within 1e-7 of a
bucket edge, where numpy's and libm's logarithms may round apart (:func:`bucket_keys`); the
run is one weighted ``add`` of the bucket's own value. The buckets end up with the counts one
add per value would give (DDSketch's ``add`` costs about half a microsecond; a
five-million-exchange capture has tens of millions of step values). They go in a few
thousand at a time (:data:`STAGED`), and the exchange rows are read column by column, never
copied whole: no temporary array is large enough to be given its own mapping by the C
allocator, whose threshold then rises and leaves the heap fragmented (a run five times as
long peaked 10 MB higher before).

numpy is imported when the first rows are folded (as :mod:`.records` reads rows back), not
with the module: the correlator imports this one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from .records import OUTCOMES, STEPS

if TYPE_CHECKING:
    import numpy as np
    from ddsketch import DDSketch

    from .records import Reconnect

__all__ = ["COUNTERS", "DEFAULT_EXACT_UP_TO", "DEFAULT_RELATIVE_ACCURACY", "INCOMPLETE_OUTCOMES",
           "SERIES_OF", "STAGED", "Aggregate", "Series", "add_sorted", "bucket_keys",
           "percentiles"]

#: Values a series keeps exactly before it turns into a sketch.
DEFAULT_EXACT_UP_TO: Final = 65_536
#: A sketch's relative accuracy: a percentile of 20 ms is said as 19.8 .. 20.2 ms.
DEFAULT_RELATIVE_ACCURACY: Final = 0.01

#: The exact counters of one broker and QoS, in the order the report prints them; the last
#: four come from the end-to-end deliveries (:mod:`.deliveries`), the three before them split
#: the incomplete QoS 2 exchanges by the last step reached.
COUNTERS: Final = ("publishes", "completed", "incomplete", "at_end_of_capture", "abandoned",
                   "evicted", "complete_after_reconnect", "refused", "protocol_error",
                   "retransmissions", "dup_flagged", "no_response", "after_pubrec",
                   "after_pubrel", "duplicates_delivered", "not_delivered",
                   "not_delivered_offline", "downgraded")
_C: Final = {name: i for i, name in enumerate(COUNTERS)}
_NC: Final = len(COUNTERS)
#: The latency series of each QoS: ``total`` then its steps (name, later column, earlier).
SERIES_OF: Final[dict[int, tuple[tuple[str, str, str], ...]]] = {
    1: (("total", "t_end", "t_publish"), ("puback", "t_puback", "t_publish")),
    2: (("total", "t_end", "t_publish"), ("pubrec", "t_pubrec", "t_publish"),
        ("pubrel", "t_pubrel", "t_pubrec"), ("pubcomp", "t_pubcomp", "t_pubrel")),
}
_O: Final = {name: i for i, name in enumerate(OUTCOMES)}
_S: Final = {name: i for i, name in enumerate(STEPS)}
_DONE: Final = (_O["complete"], _O["complete_after_reconnect"])
#: "incomplete" in the report and in ``flows --outcome incomplete``: not completed, not refused.
INCOMPLETE_OUTCOMES: Final = ("open_at_end", "abandoned", "evicted")
_UNFINISHED: Final = tuple(_O[name] for name in INCOMPLETE_OUTCOMES)
_NAT: Final = -(2**63)
#: Values a sketched series holds before adding them to its sketch.
STAGED: Final = 8192
#: Delivery status and reason codes (records.DELIVERY_STATUSES / DELIVERY_REASONS).
_DUPLICATE: Final = 1
_NOT_DELIVERED: Final = 2
_CONNECTED: Final = 1


def percentiles(values_ns: np.ndarray) -> dict[str, float | None]:
    """p50, p90, p99 (linear interpolation) and max in ms, rounded to the microsecond."""
    import numpy as np

    if values_ns.size == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ms = values_ns.astype(np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3),
            "p99": round(float(p99), 3), "max": round(float(ms.max()), 3)}


class Series:
    """The values of one latency series (ns): exact up to ``exact_up_to``, then a sketch (see
    the module docstring). ``n``, ``min_ns`` and ``max_ns`` are always exact."""

    __slots__ = ("_parts", "_staged", "accuracy", "exact_up_to", "max_ns", "min_ns", "n",
                 "sketch")

    def __init__(self, exact_up_to: int = DEFAULT_EXACT_UP_TO,
                 accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        self.exact_up_to = exact_up_to
        self.accuracy = accuracy
        self.n = 0
        self.min_ns = 0
        self.max_ns = 0
        #: The exact values (or, once sketched, those waiting to be added to the sketch).
        self._parts: list[np.ndarray] = []
        self._staged = 0
        self.sketch: DDSketch | None = None

    @property
    def exact(self) -> bool:
        return self.sketch is None

    def add(self, values_ns: np.ndarray) -> None:
        """Add int64 values (ns)."""
        import numpy as np

        k = int(values_ns.size)
        if not k:
            return
        lo, hi = int(values_ns.min()), int(values_ns.max())
        if not self.n or lo < self.min_ns:
            self.min_ns = lo
        if not self.n or hi > self.max_ns:
            self.max_ns = hi
        self.n += k
        self._parts.append(values_ns.astype(np.int64, copy=False))
        self._staged += k
        if self._staged > (self.exact_up_to if self.sketch is None else STAGED):
            self._to_sketch()

    def _to_sketch(self) -> None:
        """Move the values held into the sketch (made now if need be), all in one sorted run:
        a bucket is one add, not one per part (at most ``exact_up_to`` values the first time,
        then :data:`STAGED` and a part)."""
        import numpy as np

        if self.sketch is None:
            from ddsketch import DDSketch

            self.sketch = DDSketch(self.accuracy)
        if self._parts:
            held = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
            add_sorted(self.sketch, np.sort(held).astype(np.float64) / 1e6, self.accuracy)
        self._parts = []
        self._staged = 0

    def values(self) -> np.ndarray:
        """The exact values (unsorted); only while :attr:`exact`."""
        import numpy as np

        if self.sketch is not None:
            raise ValueError("this series is a sketch: its values were not kept")
        if not self._parts:
            return np.zeros(0, dtype=np.int64)
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]

    def merge(self, other: Series) -> None:
        """Add every value of ``other`` (left unchanged)."""
        if not other.n:
            return
        if not self.n or other.min_ns < self.min_ns:
            self.min_ns = other.min_ns
        if not self.n or other.max_ns > self.max_ns:
            self.max_ns = other.max_ns
        self.n += other.n
        self._parts.extend(other._parts)
        self._staged += other._staged
        if other.sketch is not None:
            self._to_sketch()
            assert self.sketch is not None
            self.sketch.merge(other.sketch)
        elif self._staged > (self.exact_up_to if self.sketch is None else STAGED):
            self._to_sketch()

    def copy(self) -> Series:
        out = Series(self.exact_up_to, self.accuracy)
        out.merge(self)
        return out

    def percentiles(self) -> dict[str, float | None]:
        """As :func:`percentiles` of every value; from the sketch when there is one."""
        if self.sketch is None:
            return percentiles(self.values())
        out: dict[str, float | None] = {p: round(v, 3) for p, v in self.quantiles_ms().items()}
        out["max"] = round(self.max_ns / 1e6, 3)
        return out

    def quantiles_ms(self) -> dict[str, float]:
        """p50, p90 and p99 in ms, not rounded: numpy's linear interpolation between the values
        at the two closest ranks, each read from the sketch (exact while there is none)."""
        if self.sketch is None:
            import numpy as np

            ms = self.values().astype(np.float64) / 1e6
            return {f"p{p}": float(v) for p, v in zip((50, 90, 99),
                                                      np.percentile(ms, [50, 90, 99]),
                                                      strict=True)}
        if self._parts:
            self._to_sketch()
        sketch = self.sketch
        n = int(sketch.count)
        lo, hi = self.min_ns / 1e6, self.max_ns / 1e6
        out: dict[str, float] = {}
        for p in (50, 90, 99):
            rank = p / 100 * (n - 1)
            f = math.floor(rank)
            v = _at_rank(sketch, f, n)
            if rank > f:
                v += (rank - f) * (_at_rank(sketch, f + 1, n) - v)
            out[f"p{p}"] = min(max(v, lo), hi)
        return out


def _at_rank(sketch: DDSketch, k: int, n: int) -> float:
    """The sketch's value of the ``k``-th smallest of its ``n`` values (0-based): asked at the
    middle of the rank (``k + 0.5``), so that the float product in ``get_quantile_value`` cannot
    fall just below ``k`` and name the value before it."""
    q = 1.0 if k >= n - 1 else (k + 0.5) / (n - 1)
    v = sketch.get_quantile_value(q)
    return 0.0 if v is None else float(v)


#: Per relative accuracy: its mapping, and per key the bucket's value and whether the mapping
#: gives that value its own key back (almost always; else the run is added value by value).
_MAPPINGS: dict[float, tuple[Any, dict[int, tuple[float, bool]]]] = {}
#: How close to a bucket edge (in keys) numpy's logarithm must come for the mapping's own
#: ``key`` to decide: numpy's and libm's logarithms differ by an ulp or two, i.e. by about
#: 1e-13 keys at the keys latencies take (under 10,000): 1e-7 is a wide margin.
_EDGE: Final = 1e-7


def _mapping(accuracy: float) -> tuple[Any, dict[int, tuple[float, bool]]]:
    got = _MAPPINGS.get(accuracy)
    if got is None:
        from ddsketch import LogarithmicMapping

        got = _MAPPINGS[accuracy] = (LogarithmicMapping(accuracy), {})
    return got


def bucket_keys(mapping: Any, values: np.ndarray) -> np.ndarray:
    """The key of each of ``values`` (positive floats) under ``mapping`` (a
    ``LogarithmicMapping`` made with its default offset), exactly as its ``key`` gives it:
    numpy computes the same expression from its public ``relative_accuracy``
    (``log(v) / log(2)`` times ``log(2) / log1p(gamma - 1)``, rounded up), and the values within
    :data:`_EDGE` of a bucket edge, where numpy's and libm's logarithms may round apart, are
    asked of ``mapping.key`` itself."""
    import numpy as np

    ra = mapping.relative_accuracy
    multiplier = 1 / math.log1p(2 * ra / (1 - ra)) * math.log(2)
    x = np.log(values) / math.log(2) * multiplier
    near = np.flatnonzero(np.abs(x - np.rint(x)) < _EDGE)
    out: np.ndarray = np.ceil(x).astype(np.int64)
    if len(near):
        key = mapping.key
        out[near] = [key(v) for v in values[near].tolist()]
    return out


def add_sorted(sketch: DDSketch, values: np.ndarray, accuracy: float) -> None:
    """Add sorted float values to ``sketch`` one bucket at a time (see the module docstring):
    each run of values with one key (:func:`bucket_keys`) is one weighted add of the bucket's
    value, when the mapping gives that value the same key (else the run is added value by
    value)."""
    import numpy as np

    mapping, reps = _mapping(accuracy)
    tiny = mapping.min_possible
    neg = int(np.searchsorted(values, -tiny, side="left"))        # values < -tiny
    pos = int(np.searchsorted(values, tiny, side="right"))        # values > tiny from here
    if pos > neg:
        sketch.add(0.0, float(pos - neg))
    add = sketch.add
    for run, sign in ((-values[:neg][::-1], -1.0), (values[pos:], 1.0)):
        n = len(run)
        if not n:
            continue
        keys = bucket_keys(mapping, run)
        starts = np.flatnonzero(np.diff(keys)) + 1      # keys never decrease: runs
        bounds = [0, *starts.tolist(), n]
        for i, j, k in zip(bounds, bounds[1:], keys[bounds[:-1]].tolist(), strict=False):
            rep = reps.get(k)
            if rep is None:
                value = mapping.value(k)
                rep = reps[k] = (value, mapping.key(value) == k)
            if rep[1]:
                add(sign * rep[0], float(j - i))
            else:
                for v in run[i:j].tolist():
                    add(sign * v)


class ReconnectTotals:
    """Reconnections: how many, by cause, what crossed them, and the gap series."""

    __slots__ = ("abandoned", "by_cause", "gap", "n", "publish", "pubrel", "resumed")

    def __init__(self, exact_up_to: int, accuracy: float) -> None:
        self.n = 0
        self.by_cause: Counter[str] = Counter()
        self.publish = self.pubrel = self.resumed = self.abandoned = 0
        self.gap = Series(exact_up_to, accuracy)

    def add(self, rcs: Iterable[Reconnect]) -> None:
        gaps = []
        for rc in rcs:
            self.n += 1
            self.by_cause[rc.cause or "unknown"] += 1
            self.publish += rc.redelivered_publish
            self.pubrel += rc.redelivered_pubrel
            self.resumed += rc.resumed
            self.abandoned += rc.abandoned
            if rc.gap_ns is not None:
                gaps.append(rc.gap_ns)
        import numpy as np

        self.gap.add(np.array(gaps, dtype=np.int64))

    def merge(self, other: ReconnectTotals) -> None:
        self.n += other.n
        self.by_cause.update(other.by_cause)
        self.publish += other.publish
        self.pubrel += other.pubrel
        self.resumed += other.resumed
        self.abandoned += other.abandoned
        self.gap.merge(other.gap)


class Aggregate:
    """Counters and latency series per broker (its code) and QoS (see the module docstring).

    Fed by the correlator: :meth:`q0` for each QoS 0 PUBLISH, :meth:`delivery` for each
    end-to-end delivery row, :meth:`fold` for finished QoS 1/2 exchange rows (a numpy structured
    array with the report columns), :attr:`reconnects` for reconnections once they can no
    longer change.
    """

    def __init__(self, exact_up_to: int = DEFAULT_EXACT_UP_TO,
                 accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        self.exact_up_to = exact_up_to
        self.accuracy = accuracy
        #: broker code -> counters of QoS 0, 1 and 2 (``qos * len(COUNTERS) + counter``).
        self.counts: list[list[int]] = []
        #: (broker, qos, series name) -> values.
        self.series: dict[tuple[int, int, str], Series] = {}
        self.reconnects = ReconnectTotals(exact_up_to, accuracy)

    def _of(self, broker: int) -> list[int]:
        counts = self.counts
        while len(counts) <= broker:
            counts.append([0] * (3 * _NC))
        return counts[broker]

    # -- input ---------------------------------------------------------------------------------

    def q0(self, broker: int, dup: int) -> None:
        """A QoS 0 PUBLISH (its exchange is complete at once)."""
        c = self._of(broker)
        c[_C["publishes"]] += 1
        c[_C["completed"]] += 1
        if dup:
            c[_C["dup_flagged"]] += 1

    def delivery(self, broker: int, pub_qos: int, sub_qos: int, status: int,
                 reason: int) -> None:
        """An end-to-end delivery row of a publication to ``broker`` (:mod:`.deliveries`)."""
        c = self._of(broker)
        if status == _DUPLICATE and 0 <= sub_qos <= 2:
            c[sub_qos * _NC + _C["duplicates_delivered"]] += 1
        elif status == _NOT_DELIVERED and 0 <= pub_qos <= 2:
            c[pub_qos * _NC + _C["not_delivered" if reason == _CONNECTED
                                 else "not_delivered_offline"]] += 1
        if 0 <= sub_qos < pub_qos <= 2:
            c[pub_qos * _NC + _C["downgraded"]] += 1

    def fold(self, rows: Any, session_brokers: list[int] | None = None, *,
             series: bool = True) -> None:
        """Fold finished QoS 1/2 exchange rows (a numpy structured array with the columns of
        :data:`~.records.REPORT_EXCHANGE_COLUMNS`, whose ``broker`` is the broker's code; or
        every column, whose ``session`` is a code of ``session_brokers``); ``series=False``
        counts only (a live snapshot)."""
        import numpy as np

        if not len(rows):
            return
        if "broker" in rows.dtype.names:
            brokers = rows["broker"]
        else:
            assert session_brokers is not None
            brokers = np.asarray(session_brokers, dtype=np.int32)[rows["session"]]
        qos = rows["qos"]
        one = brokers.min() == brokers.max()
        for b in [int(brokers[0])] if one else np.unique(brokers).tolist():
            c = self._of(b)
            for q in (1, 2):
                mask = qos == q
                if not one:
                    mask &= brokers == b
                if mask.any():
                    self._fold_qos(c, b, q, rows, mask, series)

    def _fold_qos(self, c: list[int], broker: int, qos: int, rows: Any, mask: Any,
                  series: bool) -> None:
        """The rows of ``mask`` (one broker and QoS), read column by column."""
        import numpy as np

        def col(name: str) -> Any:
            return rows[name][mask]

        base = qos * _NC
        outcome = col("outcome")
        done = np.isin(outcome, _DONE)
        unfinished = np.isin(outcome, _UNFINISHED)
        add = {
            "publishes": len(outcome), "completed": int(done.sum()),
            "incomplete": int(unfinished.sum()),
            "at_end_of_capture": int((outcome == _O["open_at_end"]).sum()),
            "retransmissions": int(
                (col("n_publish").astype(np.int64) - 1).sum()
                + np.maximum(col("n_pubrec").astype(np.int64) - 1, 0).sum()
                + np.maximum(col("n_pubrel").astype(np.int64) - 1, 0).sum()),
            "dup_flagged": int(col("n_dup").astype(np.int64).sum()),
        }
        for name in ("abandoned", "evicted", "complete_after_reconnect", "refused",
                     "protocol_error"):
            add[name] = int((outcome == _O[name]).sum())
        last = col("last_step")[unfinished]
        add["no_response"] = int((last == _S["publish"]).sum())
        add["after_pubrec"] = int((last == _S["pubrec"]).sum())
        add["after_pubrel"] = int((last == _S["pubrel"]).sum())
        for name, n in add.items():
            c[base + _C[name]] += n
        if not series:
            return
        for name, later, earlier in SERIES_OF[qos]:
            t1, t0 = col(later), col(earlier)
            ok = (t1 != _NAT) & (t0 != _NAT)
            if name == "total":
                ok &= done
            if ok.any():
                self._series(broker, qos, name).add(t1[ok] - t0[ok])

    def _series(self, broker: int, qos: int, name: str) -> Series:
        key = (broker, qos, name)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(self.exact_up_to, self.accuracy)
        return s

    # -- merging -------------------------------------------------------------------------------

    def merge(self, other: Aggregate) -> None:
        """Add everything ``other`` holds (same broker codes; ``other`` is left unchanged)."""
        for b, theirs in enumerate(other.counts):
            mine = self._of(b)
            for i, n in enumerate(theirs):
                mine[i] += n
        for (b, q, name), s in other.series.items():
            self._series(b, q, name).merge(s)
        self.reconnects.merge(other.reconnects)

    def copy(self, *, series: bool = True) -> Aggregate:
        """A copy (counters only with ``series=False``: a live snapshot's)."""
        out = Aggregate(self.exact_up_to, self.accuracy)
        out.counts = [list(c) for c in self.counts]
        if series:
            for key, s in self.series.items():
                out.series[key] = s.copy()
            out.reconnects.merge(self.reconnects)
        return out

    # -- output --------------------------------------------------------------------------------

    def qos_rows(self, broker: int | None = None) -> list[dict[str, Any]]:
        """One dict per QoS level (0, 1, 2): the report's figures (:mod:`.metrics`) for one
        broker, or for all of them."""
        brokers = range(len(self.counts)) if broker is None else [broker]
        total = [0] * (3 * _NC)
        for b in brokers:
            if b < len(self.counts):
                for i, n in enumerate(self.counts[b]):
                    total[i] += n
        rows: list[dict[str, Any]] = []
        for qos in (0, 1, 2):
            base = qos * _NC
            row: dict[str, Any] = {"qos": qos}
            row.update({name: total[base + i] for i, name in enumerate(COUNTERS[:11])})
            spans = SERIES_OF.get(qos, ())
            merged = {name: self._merged(brokers, qos, name) for name, _, _ in spans}
            row["latency_ms"] = (merged["total"].percentiles() if spans else
                                 {"p50": None, "p90": None, "p99": None, "max": None})
            row["latency_ms_by_step"] = {name: s.percentiles() for name, s in merged.items()
                                         if name != "total"}
            if qos == 2:
                row["qos2_incomplete"] = {name: total[base + _C[name]] for name in
                                          ("no_response", "after_pubrec", "after_pubrel")}
            row.update({name: total[base + _C[name]] for name in COUNTERS[14:]})
            rows.append(row)
        return rows

    def _merged(self, brokers: Iterable[int], qos: int, name: str) -> Series:
        parts = [s for b in brokers if (s := self.series.get((b, qos, name))) is not None]
        if len(parts) == 1:
            return parts[0]
        out = Series(self.exact_up_to, self.accuracy)
        for s in parts:
            out.merge(s)
        return out

    def sketched(self, broker: int | None = None) -> list[str]:
        """The series whose percentiles come from a sketch (``qos1 puback``, ...), of one
        broker or of the whole (where brokers' series merged past the bound count too)."""
        brokers = range(len(self.counts)) if broker is None else [broker]
        out = [f"qos{q} {name}" for q, spans in SERIES_OF.items() for name, _, _ in spans
               if not self._merged(brokers, q, name).exact]
        if broker is None and not self.reconnects.gap.exact:
            out.append("reconnect gap")
        return out

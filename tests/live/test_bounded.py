"""The live analysis's bound in time on the joinable window (``joinable_ns``, set by ``watch``):
memory stops growing once the last minutes are in, however slow the traffic, and a late
join is taken while it is within the bound and not after (docs/watch.md, "Bounded memory")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import qosinspect
from qosinspect.analysis.correlate import Correlator
from qosinspect.analysis.exchanges import FOLD_BLOCK
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.live.core import JOINABLE_NS, report_options
from qosinspect.testing.events import EventBuilder

S = 10**9


def _peak_store_bytes(options: AnalysisOptions, exchanges: int, every_ms: float
                      ) -> tuple[int, Any]:
    """The most the ring of finished exchanges held, over ``exchanges`` QoS 1 exchanges one
    every ``every_ms`` of packet time (built and fed a thousand at a time), and the figures."""
    corr = Correlator(options)
    b = EventBuilder(step_ns=round(every_ms * 1e6))
    c = b.client("slow-sensor", clean_start=False)
    peak = 0
    for i in range(exchanges):
        b.qos1(c, "c2b", "t", b"%d" % i, i % 60000 + 1, ack_ms=1.0)
        if len(b.events) >= 2000:
            for ev in b.events:
                corr.feed(ev)
            b.events.clear()
            peak = max(peak, corr.ex.exchanges.nbytes())
    for ev in b.events:
        corr.feed(ev)
    return peak, corr.finish().aggregate.qos_rows()


def test_a_slow_stream_holds_only_the_last_seconds() -> None:
    """40,000 exchanges at 100 per second fill the window of four blocks and come round it
    again; bounded to 30 s of packet time, at most the block being filled and the one before
    it are held (a block freed is allocated again when the ring comes back to it), and the
    figures are the same (no late join here)."""
    base = replace(report_options(), max_joinable_finished=4 * FOLD_BLOCK)
    row = Correlator(base).ex.exchanges.size
    unbounded, want = _peak_store_bytes(replace(base, joinable_ns=0), 40_000, 10.0)
    bounded, got = _peak_store_bytes(replace(base, joinable_ns=30 * S), 40_000, 10.0)
    assert unbounded == 4 * FOLD_BLOCK * row
    assert bounded <= 2 * FOLD_BLOCK * row
    assert got == want and got[1]["publishes"] == 40_000


def _late_dup(after_s: float) -> list[Any]:
    """Five QoS 1 exchanges (one block of four and one more, ``after_s`` later), then the first
    one's PUBLISH sent again with DUP and acknowledged again."""
    b = EventBuilder()
    c = b.client("dev", clean_start=False)
    for pid in range(1, 5):
        b.qos1(c, "c2b", "t", b"m%d" % pid, pid)
    b.advance(after_s)
    b.qos1(c, "c2b", "t", b"m5", 5)
    b.publish(c, "c2b", "t", b"m1", qos=1, packet_id=1, dup=True)
    b.puback(c, "b2c", 1)
    return b.events


def _qos1(events: list[Any], joinable_ns: int) -> dict[str, Any]:
    options = replace(report_options(), max_joinable_finished=8, joinable_ns=joinable_ns)
    report: dict[str, Any] = qosinspect.analyze(events, options).report()
    return next(r for r in report["per_qos"] if r["qos"] == 1)


def test_a_late_join_within_the_bound_joins_and_after_it_does_not() -> None:
    within, after = _late_dup(5), _late_dup(11)
    joined = _qos1(within, 0)
    assert joined["publishes"] == 5 and joined["retransmissions"] == 1
    assert _qos1(within, 10 * S) == joined           # 5 s later: still joinable
    assert _qos1(after, 0) == _qos1(within, 0)       # no bound in time: joined
    late = _qos1(after, 10 * S)                      # 11 s later: a new exchange
    assert late["publishes"] == 6 and late["retransmissions"] == 0
    assert late["dup_flagged"] == 1


def test_watch_bounds_in_time() -> None:
    """watch's analysis keeps finished exchanges joinable for five minutes (docs/watch.md says
    why), report for as many as the count bound allows."""
    assert report_options().joinable_ns == JOINABLE_NS == 300 * S
    assert AnalysisOptions().joinable_ns == 0

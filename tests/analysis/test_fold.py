"""Report mode folds what is finished (qosinspect.analysis.exchanges, aggregate, logs): the
rows kept stay bounded however long the input, and the report is the one the full analysis
gives; a late acknowledgement joins a finished exchange while it is in the joinable window,
in both modes alike."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import qosinspect
from qosinspect.analysis.api import Analysis
from qosinspect.analysis.correlate import MAX_RECONNECT_ROWS, Correlator
from qosinspect.analysis.exchanges import FOLD_BLOCK
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.testing.events import EventBuilder

SMALL = AnalysisOptions(max_joinable_finished=64, exact_percentiles_up_to=100)


def _report(events: list[Any], options: AnalysisOptions) -> dict[str, Any]:
    return qosinspect.analyze(events, options).report()


def _busy(n: int) -> EventBuilder:
    """``n`` QoS 1 and ``n`` QoS 2 exchanges each way, ids cycling, some re-sent."""
    b = EventBuilder()
    c = b.client("dev", clean_start=False)
    for i in range(n):
        pid = i % 700 + 1
        b.qos1(c, "c2b", "t", b"%d" % i, pid, ack_ms=0.1 + i % 17)
        b.qos2(c, "b2c", "u", b"%d" % i, pid, step_ms=0.5 + i % 5)
        if i % 97 == 0:
            b.publish(c, "c2b", "t", b"late %d" % i, qos=1, packet_id=pid)
            b.publish(c, "c2b", "t", b"late %d" % i, qos=1, packet_id=pid, dup=True)
            b.puback(c, "b2c", pid)
    return b


def test_report_mode_keeps_a_bounded_ring_of_rows_and_says_the_same() -> None:
    """3,000 exchanges each way through a window of 64: the report-mode store never holds more
    than the window, its figures are the full analysis' (same joining rule), and the series
    past the exact bound are said to be sketched."""
    b = _busy(1500)
    corr = Correlator(replace(SMALL, detail=False))
    peak = 0
    for ev in b.events:
        corr.feed(ev)
        peak = max(peak, corr.ex.exchanges.rows)
    assert peak <= corr.ex.window == 64
    narrow = Analysis(corr.finish()).report()
    full = _report(b.events, SMALL)
    assert narrow == full
    assert narrow["per_qos"][1]["publishes"] == 1500 + 16
    assert narrow["percentiles"]["sketched"] == ["qos1 total", "qos1 puback", "qos2 total",
                                                 "qos2 pubrec", "qos2 pubrel", "qos2 pubcomp"]
    assert narrow["percentiles"]["relative_error"] == 0.01


def test_under_the_bounds_report_mode_is_exactly_the_full_analysis() -> None:
    b = _busy(300)
    report = _report(b.events, AnalysisOptions(detail=False))
    assert report == _report(b.events, AnalysisOptions())
    assert report["percentiles"] == {"exact_up_to": 65_536, "relative_error": 0.0,
                                     "sketched": []}


@pytest.mark.parametrize("detail", [True, False])
def test_a_late_ack_joins_while_in_the_window_and_is_an_orphan_after(detail: bool) -> None:
    """A PUBREC re-sent for a finished QoS 2 exchange joins it (a re-send counted) while the
    exchange is among the last ``max_joinable_finished``; once its block left the window it
    is an orphan acknowledgement. Both modes follow the one rule."""
    window = 4 * FOLD_BLOCK
    opts = AnalysisOptions(detail=detail, max_joinable_finished=window)
    b = EventBuilder()
    c = b.client("dev", clean_start=False)
    b.qos2(c, "c2b", "t", b"first", 1)
    for i in range(window - 2 * FOLD_BLOCK):        # still in the window
        b.qos1(c, "b2c", "t", b"%d" % i, i % 60000 + 1)
    b.pubrec(c, "b2c", 1)
    r = _report(b.events, opts)
    assert r["per_qos"][2]["retransmissions"] == 1 and "orphan_ack" not in r["anomalies"]
    for i in range(2 * FOLD_BLOCK + 1):            # now the first block has left
        b.qos1(c, "b2c", "t", b"more %d" % i, i % 60000 + 1)
    b.pubrec(c, "b2c", 1)
    r = _report(b.events, opts)
    assert r["per_qos"][2]["retransmissions"] == 1 and r["anomalies"]["orphan_ack"] == 1


def test_anomaly_and_reconnect_rows_are_bounded_and_all_counted() -> None:
    """Report mode keeps the first rows of each anomaly kind (the report shows the first) and
    the first reconnections (it lists ten), and counts every one; TCP retransmissions are
    counted without rows."""
    b = EventBuilder()
    opts = AnalysisOptions(max_anomalies_per_kind=5)
    n = MAX_RECONNECT_ROWS + 20
    for i in range(n):
        c = b.client("dev", clean_start=False, session_present=i > 0)
        b.puback(c, "b2c", 7)                     # one orphan ack per connection
        b.tcp_retransmission(c, "c2b", 10)
        b.close(c, "rst")
    corr = Correlator(replace(opts, detail=False))
    result = corr.feed_all(b.events)
    assert len(result.anomalies) == 5 and len(result.reconnects) == MAX_RECONNECT_ROWS
    assert result.tcp_retransmissions.rows == 0
    narrow = Analysis(result).report()
    full = _report(b.events, opts)
    assert narrow == full
    assert narrow["anomalies"]["orphan_ack"] == n and narrow["reconnects"] == n - 1
    assert narrow["tcp_retransmissions"] == n
    assert narrow["reconnect_gap_ms"]["max"] is not None


def test_the_snapshot_counts_what_finished_folded_or_not() -> None:
    b = _busy(200)
    corr = Correlator(replace(SMALL, detail=False))
    corr.consume(b.events)
    snap = corr.snapshot()
    rows = corr.finish().aggregate.qos_rows()
    assert [r["publishes"] for r in snap.per_qos] == [r["publishes"] for r in rows]
    assert [r["retransmissions"] for r in snap.per_qos] == [r["retransmissions"] for r in rows]
    assert snap.open_by_qos == {0: 0, 1: 0, 2: 0} and snap.connections_seen == 1


def test_the_window_passes_sessions_with_few_exchanges() -> None:
    """Sessions that finish a handful of exchanges keep their index as a small array (issue
    11 §9); the window's retiring forgets keys in that tier too (it asserted a dict or the
    full array: the benchmark capture stopped at its first retired block)."""
    b = EventBuilder()
    for k in range(40):
        c = b.client(f"dev-{k}", clean_start=False)
        for i in range(3):
            b.qos1(c, "c2b", "t", b"%d" % i, i + 1, ack_ms=0.2 + i)
            b.qos2(c, "b2c", "u", b"%d" % i, i + 1, step_ms=0.3)
    narrow = _report(b.events, replace(SMALL, detail=False))
    assert narrow == _report(b.events, SMALL)
    assert narrow["per_qos"][1]["completed"] == 120 and narrow["per_qos"][2]["completed"] == 120


def test_done_index_forgets_in_every_tier() -> None:
    from qosinspect.analysis.state import DONE_DICT_LIMIT, DONE_SMALL_LIMIT, DoneIndex

    for n in (DONE_SMALL_LIMIT, DONE_SMALL_LIMIT + 1, DONE_DICT_LIMIT + 1):
        idx = DoneIndex()
        for key in range(n):
            idx.put(key, 1000 + key)
        idx.forget(0, 999)                   # another exchange's row: kept
        assert idx.get(0) == 1000
        idx.forget(0, 1000)
        assert idx.get(0) is None
        assert idx.get(n - 1) == 1000 + n - 1

"""The live core (qosinspect.live.core) on a shipped capture of the generator's ``reconnect`` run:
its events, snapshots and final result against ``report`` and the ground truth."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.analysis.api import Analysis, analyze_capture
from qosinspect.analysis.metrics import STEP_SPANS
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.analysis.records import NO_TS
from qosinspect.capture import iter_events
from qosinspect.live.core import LiveCore
from qosinspect.live.latency import RELATIVE_ACCURACY, WINDOW_S, LatencySketches, quantiles_of

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
RECONNECT = CAPTURES / "gen-reconnect.pcap"
TRUTH = json.loads((CAPTURES / "gen-reconnect.truth.json").read_text())


def run(path: Path, **options: Any) -> tuple[list[dict[str, Any]], Analysis]:
    core = LiveCore(**options)
    out: list[dict[str, Any]] = []
    for ev in iter_events(path):
        out += core.feed(ev)
    items, result = core.finish()
    return out + items, Analysis(result, source=str(path))


@pytest.fixture(scope="module")
def reconnect_run() -> tuple[list[dict[str, Any]], Analysis]:
    return run(RECONNECT, stall_ms=500)


def test_final_result_is_the_reports(reconnect_run: tuple[list[dict[str, Any]], Analysis]
                                     ) -> None:
    _, analysis = reconnect_run
    want = analyze_capture(RECONNECT, options=AnalysisOptions(detail=False)).report()
    del want["capture"]["frames"], want["capture"]["mqtt_packets"]  # the decoder's summary
    assert analysis.report() == want


def test_reconnection_event_is_the_truths(reconnect_run: tuple[list[dict[str, Any]], Analysis]
                                          ) -> None:
    events, analysis = reconnect_run
    rec = [e for e in events if e["type"] == "reconnection"]
    truth = TRUTH["clients"]["sub-persistent"]["reconnects"]
    assert [(e["client_id"], e["session_present"]) for e in rec] == [
        ("sub-persistent", r["session_present"]) for r in truth]
    assert rec[0]["gap_ms"] == pytest.approx(truth[0]["gap_s"] * 1000, abs=5)
    # settled: what was redelivered after the reconnection is in the event
    table = analysis.reconnects.iloc[0]
    assert rec[0]["redelivered"]["publish"] == table["redelivered_publish"] > 0
    assert rec[0]["cause"] == "rst"


def test_stalls_are_the_held_acks(reconnect_run: tuple[list[dict[str, Any]], Analysis]) -> None:
    """The scenario holds the subscriber's acks for 0.8 s: the handshakes open across it are
    stalls (once each), on the subscriber's session."""
    events, _ = reconnect_run
    stalls = [e for e in events if e["type"] == "stall"]
    assert stalls
    assert {e["client_id"] for e in stalls} == {"sub-persistent"}
    keys = [(e["conn_id"], e["direction"], e["packet_id"]) for e in stalls]
    assert len(keys) == len(set(keys))
    assert all(e["open_ms"] > 500 for e in stalls)
    quiet, _ = run(RECONNECT, stall_ms=60_000)
    assert not [e for e in quiet if e["type"] == "stall"]


def test_last_snapshot_counts_what_the_report_counts(
        reconnect_run: tuple[list[dict[str, Any]], Analysis]) -> None:
    events, analysis = reconnect_run
    snaps = [e for e in events if e["type"] == "snapshot"]
    assert len(snaps) >= 3     # one a second of a 4 s capture, and the last
    report = analysis.report()
    for row, snap in zip(report["per_qos"], snaps[-1]["per_qos"], strict=True):
        assert snap["open"] == 0
        assert (snap["messages"], snap["completed"], snap["retransmissions"],
                snap["dup_flagged"], snap["duplicates_delivered"], snap["not_delivered"]) == (
            row["publishes"], row["completed"], row["retransmissions"], row["dup_flagged"],
            row["duplicates_delivered"], row["not_delivered"])
        for step, q in snap["latency_ms"].items():
            ms = step_samples(analysis, row["qos"], step)
            assert q["since_start"]["n"] == len(ms)
            for name, p in (("p50", 50), ("p99", 99)):
                # a DDSketch quantile is a sample's value at that rank, within its accuracy
                lo = np.percentile(ms, p, method="lower") * (1 - RELATIVE_ACCURACY)
                hi = np.percentile(ms, p, method="higher") * (1 + RELATIVE_ACCURACY)
                assert lo - 1e-3 <= q["since_start"][name] <= hi + 1e-3, (step, name)
    # messages only grow, and an earlier snapshot had handshakes open (the held acks)
    q2 = [s["per_qos"][2]["messages"] for s in snaps]
    assert q2 == sorted(q2)
    assert any(s["per_qos"][1]["open"] or s["per_qos"][2]["open"] for s in snaps)


def step_samples(analysis: Analysis, qos: int, step: str) -> np.ndarray:
    """The exact latencies (ms) of one step, from the finished exchanges' rows."""
    view = analysis.result.exchanges.view()
    view = view[view["qos"] == qos]
    later, earlier = next((b, c) for n, b, c in STEP_SPANS[qos] if n == step)
    ok = (view[later] != NO_TS) & (view[earlier] != NO_TS)
    return np.asarray((view[later][ok] - view[earlier][ok]) / 1e6)


def test_tick_without_packets_says_a_stall() -> None:
    """The driver may advance time while the link is silent: a handshake open since then is
    a stall without any later packet."""
    core = LiveCore(stall_ms=1000)
    events = list(iter_events(RECONNECT))
    # up to the first QoS 1 PUBLISH from the publisher, nothing after it
    cut = next(i for i, e in enumerate(events) if type(e).__name__ == "MqttPacketEvent"
               and getattr(e.packet, "qos", 0) == 1)
    for ev in events[:cut + 1]:
        core.feed(ev)
    t = events[cut].ts_ns
    assert not [e for e in core.tick(t + 500_000_000) if e["type"] == "stall"]
    stalls = [e for e in core.tick(t + 1_500_000_000) if e["type"] == "stall"]
    assert [(e["qos"], e["last_step"]) for e in stalls] == [(1, "publish")]
    assert not [e for e in core.tick(t + 2_500_000_000) if e["type"] == "stall"]  # once


def test_sketch_window_forgets_old_seconds() -> None:
    s = LatencySketches()
    t0 = 1_700_000_000 * 10**9
    for i in range(100):
        s.add(t0 + i * 10**7, 1.0)          # second 0: 1 ms
    for i in range(100):
        s.add(t0 + 12 * 10**9 + i, 50.0)    # second 12: 50 ms
    assert s.since_start().n == 200
    last = s.last(t0 + 12 * 10**9)
    assert last.n == 100
    assert last.p50 == pytest.approx(50, rel=1.5 * RELATIVE_ACCURACY)
    assert s.last(t0 + 5 * 10**9).p50 == pytest.approx(1, rel=1.5 * RELATIVE_ACCURACY)
    assert s.last(t0 + 30 * 10**9).n == 0


def test_snapshot_before_any_packet_has_no_time() -> None:
    items, result = LiveCore().finish()
    snap = items[-1]
    assert snap["type"] == "snapshot" and snap["ts"] is None and snap["ts_ns"] is None
    assert [row["messages"] for row in snap["per_qos"]] == [0, 0, 0]
    assert result.n_events == 0


@pytest.mark.parametrize("most", [1, 7, 256])
def test_consume_in_batches_says_what_feed_says(most: int) -> None:
    """``consume`` (the watch loop: the correlator walks the events in its own loop) gives the
    same notable events and snapshots, in the same order, as ``feed`` event by event."""
    want, _ = run(RECONNECT, stall_ms=500)
    core = LiveCore(stall_ms=500)
    got: list[dict[str, Any]] = []
    events = iter(iter_events(RECONNECT))
    while True:
        items, n = core.consume(events, most)
        got += items
        if not n:
            break
    items, _ = core.finish()
    assert got + items == want


def test_snapshot_counts_of_cached_blocks_follow_late_joins() -> None:
    """A snapshot counts the window's whole blocks once and keeps the counts; a late join
    (a DUP re-send or an acknowledgement of a finished exchange) changes a row of such a block,
    and the next snapshot must count it again: with blocks of 32 rows, every snapshot equals
    the counters folded afresh from every finished row."""
    from qosinspect.live.core import report_options

    core = LiveCore(options=replace(report_options(), max_joinable_finished=64),
                    interval_ms=50)
    joined = 0
    for ev in iter_events(RECONNECT):
        before, retired = core.corr.ex.counted.copy(), core.corr.ex.retired
        core.feed(ev)
        if core.corr.ex.retired == retired:     # dropped by a late join, not by a retirement
            joined += len(before.keys() - core.corr.ex.counted.keys())
        fresh = core.corr.aggregate.copy(series=False)
        for rows in core.corr.ex.unfolded():
            fresh.fold(rows, [s.broker for s in core.corr.sess.by_code], series=False)
        assert core.corr.snapshot().per_qos == fresh.qos_rows()
    assert joined     # late joins did drop cached counts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.floats(0.001, 5000.0)),
                         min_size=1, max_size=30), min_size=1, max_size=25))
def test_sketches_are_one_sketch_of_their_samples(batches: list[list[tuple[int, float]]]
                                                  ) -> None:
    """Batches of samples of any seconds (late ones too, as a QoS 2 step ending before the
    newest): since the start, the quantiles of one DDSketch of every sample; over the last
    seconds, of the samples of those seconds taken while their slot of the ring held them."""
    from ddsketch import DDSketch

    def quantiles(values: list[float]) -> tuple[int, float | None, float | None]:
        ref = DDSketch(RELATIVE_ACCURACY)
        for v in values:
            ref.add(v)
        q = quantiles_of(ref)
        return (q.n, q.p50, q.p99)

    s = LatencySketches()
    every: list[float] = []
    slot_sec = [-1] * WINDOW_S
    kept: dict[int, list[float]] = {}
    for batch in batches:
        ts = np.array([sec * 10**9 + 1 for sec, _ in batch], dtype=np.int64)
        s.add_many(ts, np.array([v for _, v in batch]))
        for sec in sorted({sec for sec, _ in batch}):
            values = [v for t, v in batch if t == sec]
            every += values
            i = sec % WINDOW_S
            if slot_sec[i] > sec:
                continue
            if slot_sec[i] < sec:
                kept.pop(slot_sec[i], None)
                slot_sec[i] = sec
            kept.setdefault(sec, []).extend(values)
        q = s.since_start()
        assert (q.n, q.p50, q.p99) == quantiles(every)
        for now in range(0, 52, 3):
            window = [v for sec, vs in kept.items() if now - WINDOW_S < sec <= now for v in vs]
            q = s.last(now * 10**9)
            assert (q.n, q.p50, q.p99) == quantiles(window), now


@pytest.mark.parametrize("name,ports", [("gen-reconnect.pcap", (1883, 1884)),
                                        ("gen-stalled-acks.pcap", (1883,)),
                                        ("two-brokers.pcap", (41131, 55931))])
def test_open_counts_kept_as_they_change_are_a_walk_of_the_sessions(
        name: str, ports: tuple[int, ...]) -> None:
    """A snapshot reads the open handshakes from counts the exchange tracker keeps as
    exchanges open and end (and the stalls from the sessions with one open), not from a walk
    of every session seen: after every event they equal that walk."""
    from qosinspect.analysis.correlate import Correlator
    from qosinspect.live.core import report_options

    corr = Correlator(report_options())
    seen_open = 0
    for ev in iter_events(CAPTURES / name, ports=ports):
        corr.feed(ev)
        walk: dict[int, int] = {}
        for s in corr.sess.by_code:
            for ex in s.open.values():
                walk[s.broker * 3 + ex.qos] = walk.get(s.broker * 3 + ex.qos, 0) + 1
        assert {k: v for k, v in corr.ex.open_counts.items() if v} == walk
        assert sorted(corr.ex.busy) == [s.code for s in corr.sess.by_code if s.open]
        seen_open = max(seen_open, sum(walk.values()))
    assert seen_open > 0

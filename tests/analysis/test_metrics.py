"""Per-QoS figures with known answers: counts, splits, percentiles."""

from __future__ import annotations

import numpy as np
import pytest

import qosinspect
from qosinspect.analysis.metrics import report_dict, summary_rows
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.testing.events import EventBuilder


def _q1_latencies(latencies_ms: list[float]) -> EventBuilder:
    b = EventBuilder()
    c = b.client("m")
    for pid, ms in enumerate(latencies_ms, start=1):
        b.qos1(c, "c2b", "t", bytes([pid]), pid, ack_ms=ms)
    return b


def test_percentiles_are_numpy_linear_in_ms() -> None:
    lat = [1.0, 2.0, 3.0, 4.0, 100.0]
    row = summary_rows(qosinspect.analyze(_q1_latencies(lat).events).result)[1]
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    assert row["latency_ms"] == {"p50": round(p50, 3), "p90": round(p90, 3),
                                 "p99": round(p99, 3), "max": 100.0}
    assert row["latency_ms_by_step"]["puback"] == row["latency_ms"]


def test_latency_has_nanosecond_resolution() -> None:
    row = summary_rows(qosinspect.analyze(_q1_latencies([0.000123]).events).result)[1]
    assert row["latency_ms"]["max"] == 0.0  # 123 ns rounds to 0.000 ms ...
    ex = qosinspect.analyze(_q1_latencies([0.000123]).events).exchanges
    assert int(ex["latency_puback"].iloc[0].value) == 123  # ... but is kept exactly


def test_counts_and_splits() -> None:
    b = EventBuilder()
    c = b.client("m", clean_start=False)
    b.qos2(c, "c2b", "t", b"ok", 1)                              # complete
    b.publish(c, "c2b", "t", b"n", qos=2, packet_id=2)           # no response
    b.publish(c, "c2b", "t", b"r", qos=2, packet_id=3)
    b.pubrec(c, "b2c", 3)                                        # after PUBREC
    b.publish(c, "c2b", "t", b"l", qos=2, packet_id=4)
    b.pubrec(c, "b2c", 4)
    b.pubrel(c, "c2b", 4)
    b.pubrel(c, "c2b", 4)                                        # after PUBREL, resent
    b.publish(c, "c2b", "t", b"x", qos=1, packet_id=5)
    b.puback(c, "b2c", 5, 0x87)                                  # refused
    b.publish(c, "c2b", "t", b"d", qos=1, packet_id=6)
    b.publish(c, "c2b", "t", b"d", qos=1, packet_id=6, dup=True)  # re-send with DUP
    b.puback(c, "b2c", 6)
    b.publish(c, "c2b", "t", b"w", qos=1, packet_id=7)
    b.pubrec(c, "b2c", 7)                                        # wrong ack: protocol error
    b.publish(c, "c2b", "t", b"z")                               # QoS 0
    rep = qosinspect.analyze(b.events).report()
    q0, q1, q2 = rep["per_qos"]
    assert (q0["publishes"], q0["completed"], q0["incomplete"]) == (1, 1, 0)
    assert (q1["publishes"], q1["completed"], q1["refused"], q1["protocol_error"]) == (3, 1, 1,
                                                                                      1)
    assert (q1["retransmissions"], q1["dup_flagged"]) == (1, 1)
    assert (q2["publishes"], q2["completed"], q2["incomplete"], q2["at_end_of_capture"]) == (
        4, 1, 3, 3)
    assert q2["retransmissions"] == 1  # the PUBREL sent twice
    assert rep["qos2_incomplete"] == {"no_response": 1, "after_pubrec": 1, "after_pubrel": 1}
    assert rep["anomalies"] == {"wrong_ack_type": 1}


def test_abandoned_and_evicted_count_as_incomplete() -> None:
    b = EventBuilder()
    c = b.client("m", clean_start=True)
    for pid in (1, 2, 3):
        b.publish(c, "c2b", "t", bytes([pid]), qos=1, packet_id=pid)
    b.close(c, "rst")
    capped = AnalysisOptions(max_open_per_session=2)
    row = summary_rows(qosinspect.analyze(b.events, capped).result)[1]
    assert (row["incomplete"], row["abandoned"], row["evicted"]) == (3, 2, 1)


def test_reconnection_figures() -> None:
    b = EventBuilder()
    c1 = b.client("r", clean_start=False)
    b.publish(c1, "b2c", "t", b"1", qos=1, packet_id=1)
    b.close(c1, "rst")
    b.advance(2)
    c2 = b.client("r", clean_start=False, session_present=True)
    b.publish(c2, "b2c", "t", b"1", qos=1, packet_id=1, dup=True)
    b.puback(c2, "c2b", 1)
    b.tcp_retransmission(c2, "b2c", 10)
    rep = qosinspect.analyze(b.events).report()
    assert rep["reconnects"] == 1 and rep["reconnect_gap_ms"]["max"] == pytest.approx(2002.0)
    assert rep["redelivered"] == {"publish": 1, "pubrel": 0, "resumed": 1, "abandoned": 0}
    assert rep["connection_ends"] == {"end_of_capture": 1, "rst": 1}
    assert (rep["tcp_retransmissions"], rep["tcp_retransmission_connections"]) == (1, 1)
    assert rep["per_qos"][1]["complete_after_reconnect"] == 1


def test_delivery_figures_by_qos() -> None:
    b = EventBuilder()
    s1 = b.client("s1")
    b.subscribe(s1, 1, ("t/#", 0))
    s2 = b.client("s2")
    b.subscribe(s2, 1, ("t/#", 1))
    p = b.client("p")
    b.qos1(p, "c2b", "t/a", b"a", 1)
    b.publish(s1, "b2c", "t/a", b"a")                          # downgraded to QoS 0
    b.publish(s2, "b2c", "t/a", b"a", qos=1, packet_id=9)
    b.publish(s2, "b2c", "t/a", b"a", qos=1, packet_id=9, dup=True)  # duplicate delivered
    b.puback(s2, "c2b", 9)
    b.publish(p, "c2b", "t/b", b"b")                            # nobody gets it: 2 losses
    b.advance(3)
    b.ping(s1)
    rows = summary_rows(qosinspect.analyze(b.events).result)
    assert [r["duplicates_delivered"] for r in rows] == [0, 1, 0]
    assert [r["downgraded"] for r in rows] == [0, 1, 0]
    assert [r["not_delivered"] for r in rows] == [2, 0, 0]


def test_suppressed_anomalies_still_count() -> None:
    b = EventBuilder()
    c = b.client("m")
    for pid in range(1, 8):
        b.puback(c, "b2c", pid)
    rep = qosinspect.analyze(b.events, AnalysisOptions(max_anomalies_per_kind=3)).report()
    assert rep["anomalies"] == {"orphan_ack": 7}


def test_empty_analysis_report() -> None:
    rep = report_dict(qosinspect.analyze([]).result)
    assert [r["publishes"] for r in rep["per_qos"]] == [0, 0, 0]
    assert rep["per_qos"][1]["latency_ms"] == {"p50": None, "p90": None, "p99": None,
                                               "max": None}
    assert rep["capture"]["duration_s"] is None and rep["connections"] == 0


def test_figures_over_many_chunks_equal_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report is computed chunk by chunk of the row store: chunking changes nothing."""
    b = EventBuilder()
    c = b.client("m")
    for pid in range(1, 40):
        if pid % 3:
            b.qos2(c, "c2b", "t", bytes([pid]), pid, step_ms=pid / 10)
        else:
            b.qos1(c, "b2c", "t", bytes([pid]), pid, ack_ms=pid / 7)
    one = qosinspect.analyze(b.events).report()
    many = qosinspect.analyze(b.events, AnalysisOptions(first_chunk_rows=2, max_chunk_rows=4))
    assert len(many.result.exchanges.chunks()) > 5
    assert many.report() == one

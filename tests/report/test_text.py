"""Text renderings: tables, the report in three formats, the ladder."""

from __future__ import annotations

import json

import pytest

import qosinspect
from qosinspect.report.text import format_report, ladder_lines
from qosinspect.testing.events import EventBuilder


def _analysis() -> qosinspect.Analysis:
    b = EventBuilder()
    c = b.client("dev", clean_start=False)
    b.publish(c, "c2b", "t", b"1", qos=2, packet_id=1)
    b.pubrec(c, "b2c", 1)
    b.gap(c, "b2c", 12)
    b.tcp_retransmission(c, "c2b", 40)
    b.close(c, "rst", closed_by="c2b")
    c2 = b.client("dev", clean_start=False, session_present=True, dt_ms=100)
    b.publish(c2, "c2b", "t", b"2", qos=2, packet_id=2)
    b.puback(c2, "b2c", 9)
    return qosinspect.analyze(b.events)


def test_report_table_sections() -> None:
    text = format_report(_analysis(), "table", capture="x.pcap")
    for heading in ("Per QoS level", "Latency per step (ms)", "Outcomes",
                    "Connections and reconnections", "TCP", "Anomalies"):
        assert f"{heading}\n{'=' * len(heading)}" in text
    assert "no response 1, after PUBREC 1, after PUBREL 0" in text
    assert "qosinspect flows x.pcap --outcome incomplete" in text
    assert "TCP retransmissions: 1 segments on 1 connections" in text
    assert "orphan_ack" in text and "stream_gap" in text
    row = next(line for line in text.splitlines() if line.startswith("dev "))
    assert row.split()[:6] == ["dev", "0", "1", "rst", "101.000", "1"]  # gap, session present
    anomaly = next(line for line in text.splitlines() if line.startswith("orphan_ack"))
    assert "b2c PUBACK for packet id 9" in anomaly


def test_report_json_round_trips() -> None:
    data = json.loads(format_report(_analysis(), "json"))
    assert data["qos2_incomplete"] == {"no_response": 1, "after_pubrec": 1, "after_pubrel": 0}
    assert data["per_qos"][2]["incomplete"] == 2 and data["anomalies"] == {
        "orphan_ack": 1, "stream_gap": 1}


def test_ladder_marks_gaps_retransmissions_and_reconnection() -> None:
    lines = ladder_lines(_analysis(), client="dev")
    text = "\n".join(lines)
    assert "~~ stream_gap (b2c): 12 bytes missing" in text
    assert "~~ TCP retransmission c2b: 40 bytes again" in text
    assert "== connection 0 ended: rst (transport: rst by c2b)" in text
    assert "CONNACK rc=0 sp=1" in text
    c2b = [line for line in lines if "PUBLISH q2 id=1" in line]
    assert c2b and c2b[0].rstrip().endswith(">|")
    b2c = [line for line in lines if "PUBREC id=1" in line]
    assert b2c and "|<-- PUBREC" in b2c[0]


def test_ladder_unknown_target() -> None:
    with pytest.raises(LookupError, match="no client 'x'"):
        ladder_lines(_analysis(), client="x")
    with pytest.raises(LookupError, match="no connection 7"):
        ladder_lines(_analysis(), conn=7)


def test_an_empty_client_id_is_no_one_client() -> None:
    """Clients without a client id are each their own (sessions conn:N, here on two brokers):
    --client '' must not merge them into one diagram; it names the connections to pick from."""
    from qosinspect.events import Endpoint

    b = EventBuilder()
    first = b.client("", clean_start=True)
    b.broker = Endpoint("10.0.0.9", 1883)
    second = b.client("", clean_start=True)
    b.publish(first, "c2b", "t", b"1")
    b.publish(second, "c2b", "t", b"2")
    a = qosinspect.analyze(b.events)
    with pytest.raises(LookupError) as err:
        ladder_lines(a, client="")
    assert "conn:0" in str(err.value) and "conn:1" in str(err.value)
    assert any("t" in line for line in ladder_lines(a, client="conn:1"))


def test_report_says_when_percentiles_come_from_a_sketch() -> None:
    """One line, only when a series held more values than the exact bound (issue 14)."""
    from qosinspect.analysis.options import AnalysisOptions

    b = EventBuilder()
    c = b.client("dev")
    for i in range(40):
        b.qos1(c, "c2b", "t", b"%d" % i, i + 1, ack_ms=1 + i)
    exact = format_report(qosinspect.analyze(b.events), "table")
    assert "DDSketch" not in exact
    text = format_report(qosinspect.analyze(b.events, AnalysisOptions(exact_percentiles_up_to=30)),
                         "table")
    line = next(line for line in text.splitlines() if "DDSketch" in line)
    assert line == ("percentiles of qos1 total, qos1 puback from a DDSketch (relative error 1%): "
                    "more than 30 values each; counts and max exact")

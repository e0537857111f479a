"""TCP evidence in the report, its text, the export, the timeline and ``--broker`` (issue 11 §5).

The counts themselves are compared with tshark in tests/capture/test_tcp_analysis.py; here they
go where a user reads them: ``report --format json`` key ``tcp_evidence`` (documented in
docs/glossary.md), the text report's "TCP evidence" section (only when there is some), the
``tcp_evidence`` table of ``export`` and the data of the timeline plot, encrypted connections
included. Captures: captures/field/tcp-loss-*.pcap (real loss, see captures/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.logs import EvidenceLog
from qosinspect.analysis.tcp_evidence import MAX_FRAMES, REPORTED, evidence_report
from qosinspect.cli import main
from qosinspect.events import Endpoint, TcpEvidence
from qosinspect.report.plots import plot_timeline, timeline_data
from qosinspect.report.text import format_report
from qosinspect.testing.tools import PROJECT_ROOT

FIELD = PROJECT_ROOT / "captures" / "field"
LOSS = FIELD / "tcp-loss-broker-side.pcap"
TLS_LOSS = FIELD / "tcp-loss-tls-broker-side.pcap"


def test_report_json_counts_per_connection_and_direction_with_frames() -> None:
    report = analyze_capture(LOSS).report()
    ev = report["tcp_evidence"]
    assert list(ev["total"]) == list(REPORTED)
    assert ev["total"]["lost_segment"] == 2 and ev["total"]["fast_retransmission"] == 2
    rows = {e["direction"]: e for e in ev["connections"]}
    assert set(rows) == {"c2b", "b2c"}
    c2b = rows["c2b"]
    assert c2b["client"] == c2b["src"] and c2b["broker"] == c2b["dst"]
    assert c2b["broker"].endswith(":1883") and c2b["transport"] == "tcp"
    for e in ev["connections"]:
        for kind, n in e["counts"].items():
            assert n == len(e["frames"][kind]) > 0
    assert sum(e["counts"].get(k, 0) for e in ev["connections"] for k in REPORTED) == sum(
        ev["total"].values())
    json.dumps(report)  # JSON-ready


def test_counts_are_complete_and_frame_lists_bounded() -> None:
    """A capture of a million duplicate ACKs costs counters: the rows (and the frames the
    report lists) are bounded, the counts are not."""
    log = EvidenceLog(max_rows=5)
    a, b = Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 1883)
    for i in range(MAX_FRAMES * 3):
        log.add(TcpEvidence(10**18 + i, i + 1, 7, b, a, "duplicate_ack"))
    assert len(log.rows) == 5
    out = evidence_report(log)
    assert out["total"]["duplicate_ack"] == MAX_FRAMES * 3
    (entry,) = out["connections"]
    assert entry["counts"] == {"duplicate_ack": MAX_FRAMES * 3}
    assert entry["frames"]["duplicate_ack"] == [1, 2, 3, 4, 5]
    assert entry["direction"] is None and entry["src"] == "10.0.0.2:1883"  # no such connection
    log = EvidenceLog(max_rows=1000)
    for i in range(MAX_FRAMES * 3):
        log.add(TcpEvidence(10**18 + i, i + 1, 7, b, a, "duplicate_ack"))
    assert len(evidence_report(log)["connections"][0]["frames"]["duplicate_ack"]) == MAX_FRAMES


def test_text_report_has_the_section_only_when_there_is_evidence() -> None:
    a = analyze_capture(TLS_LOSS)
    text = format_report(a)
    section = text.split("TCP evidence\n")[1].split("\n\n")[0]
    client = a.report()["tcp_evidence"]["connections"][0]["client"]
    assert "lost before capture" in section and "fast retrans" in section
    assert client in section and "10.9.0.2:8883" in section and " tls " in section
    assert " c2b " in section and " b2c " in section
    assert "qosinspect export" in section and "(tcp_evidence)" in section
    quiet = format_report(analyze_capture(PROJECT_ROOT / "captures" / "gen-qos1.pcap"))
    assert "TCP evidence" not in quiet


def test_export_writes_the_evidence_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(LOSS), "-o", str(tmp_path), "--format",
                                       "csv"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "tcp_evidence.csv").read_text().splitlines()
    assert lines[0].split(",") == ["ts", "frame", "conn_id", "src", "dst", "kind"]
    table = analyze_capture(LOSS).tcp_evidence
    assert len(lines) - 1 == len(table) == 14
    assert str(table["kind"].dtype) == "category" and str(table["frame"].dtype) == "int64"


def test_broker_filter_keeps_the_evidence_of_its_connections() -> None:
    kept = analyze_capture(TLS_LOSS, broker="10.9.0.2:8883").report()["tcp_evidence"]
    assert kept == analyze_capture(TLS_LOSS).report()["tcp_evidence"]
    other = analyze_capture(TLS_LOSS, broker="10.9.0.2:1883").report()["tcp_evidence"]
    assert not any(other["total"].values()) and other["connections"] == []


def test_timeline_shows_encrypted_connections_with_their_tcp_evidence() -> None:
    """The encrypted connections have no client id (no session): each gets a row of its own,
    and the TCP evidence is marked on the row of the connection where it happened."""
    a = analyze_capture(TLS_LOSS)
    data = timeline_data(a)
    assert len(data.rows) == 2 and all(" tls " in r for r in data.rows)
    assert data.rows[0].startswith("conn 0 ") and data.rows[1].startswith("conn 1 ")
    assert sorted(y for y, *_ in data.bars) == [0, 1]
    total = a.report()["tcp_evidence"]["total"]
    assert {k: len(v) for k, v in data.tcp.items()} == {k: n for k, n in total.items() if n}
    assert {y for marks in data.tcp.values() for y, _ in marks} == {0}  # the lossy connection
    frames = a.tcp_evidence
    first_lost = frames[frames["kind"] == "lost_segment"]["ts"].iloc[0]
    t0 = a.result.t_first or 0
    assert abs(data.tcp["lost_segment"][0][1] - (first_lost.value - t0) / 1e9) < 1e-9
    ax = plot_timeline(a)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "lost before capture" in labels and "fast retransmission" in labels
    # a clear-text capture: the client's row carries its evidence
    plain = timeline_data(analyze_capture(LOSS))
    assert plain.rows == ["lossy"] and set(plain.tcp) >= {"lost_segment", "duplicate_ack"}


def test_connections_past_the_listed_ones_count_in_the_totals() -> None:
    """A log listing 3 connections: flags on a fourth and fifth are in ``total`` and
    ``unlisted``, not in ``connections``; a listed connection keeps counting past the cap."""
    log = EvidenceLog(100, max_conns=3)
    broker = Endpoint("10.0.0.1", 1883)
    frame = 0
    for conn_id in (0, 1, 2, 3, 4, 0):
        for kind in ("retransmission", "duplicate_ack", "window_update"):
            frame += 1
            log.add(TcpEvidence(frame, frame, conn_id, Endpoint("10.0.0.2", 50000 + conn_id),
                                broker, kind))
    report = evidence_report(log)
    assert report["total"]["retransmission"] == 6 and report["total"]["duplicate_ack"] == 6
    assert [e["conn_id"] for e in report["connections"]] == [0, 1, 2]
    assert report["connections"][0]["counts"] == {"duplicate_ack": 2, "retransmission": 2}
    assert report["unlisted"] == 4     # two reported kinds on each of connections 3 and 4
    assert log.conn_ids == {0, 1, 2}

"""Undecoded streams as a report summary (bounded) and a table (issue 11 §4)."""

from __future__ import annotations

from qosinspect.analysis.undecoded import SCHEMA, UndecodedStreams, undecoded_frame
from qosinspect.capture import iter_events
from qosinspect.events import Endpoint, UndecodedStream
from qosinspect.testing.tools import PROJECT_ROOT


def _ev(conn_id: int, size: int) -> UndecodedStream:
    return UndecodedStream(10**18 + conn_id, conn_id, Endpoint("10.0.0.1", 40000 + conn_id),
                           Endpoint("10.0.0.2", 17501), False, size, 3, conn_id + 1,
                           conn_id + 9, "not_mqtt", 17501)


def test_count_and_the_largest_in_bounded_memory() -> None:
    agg = UndecodedStreams(top=3)
    for i in range(1000):
        agg.add(_ev(i, (i * 7919) % 1000))
    assert agg.count == 1000
    assert agg.data_bytes == sum((i * 7919) % 1000 for i in range(1000))
    assert [e.data_bytes for e in agg.top()] == [999, 998, 997]
    assert len(agg._heap) == 3
    summary = agg.summary()
    assert summary["largest"][0]["port"] == 17501 and summary["count"] == 1000


def test_table_has_the_declared_dtypes_and_one_row_per_stream() -> None:
    evs = list(iter_events(PROJECT_ROOT / "captures" / "field" / "paho-midstream-17501.pcap"))
    frame = undecoded_frame(evs)
    assert list(frame.columns) == [name for name, _, _ in SCHEMA]
    assert {str(frame[name].dtype) for name, dtype, _ in SCHEMA if dtype == "int64"} == {"int64"}
    assert len(frame) == 4 and (frame["data_bytes"] > 0).all()
    assert UndecodedStreams().consume(evs).count == 4
    assert undecoded_frame([]).empty


def test_report_and_export_list_the_undecoded_streams() -> None:
    """Real paho clients on 127.0.0.1 carry wake-up socket pairs (one byte per wake-up): data
    that is not MQTT. The report counts them and names the --port that would decode each; export
    writes the table (nothing dropped in silence)."""
    from qosinspect.analysis.api import analyze_capture
    from qosinspect.report.text import format_report

    capture = PROJECT_ROOT / "captures" / "field" / "paho-midstream-17501.pcap"
    a = analyze_capture(capture)
    assert a.report()["undecoded_streams"] == 4
    text = format_report(a)
    assert "TCP streams with data not decoded as MQTT: 4" in text and "--port 39457" in text
    table = a.tables()["undecoded_streams"]
    assert len(table) == 4 and set(table["reason"]) == {"undecided"}
    assert str(table["port"].dtype) == "int32"

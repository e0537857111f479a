"""The DataFrames: declared columns and dtypes, values, summary, lazy import."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import qosinspect
from qosinspect.analysis.api import TABLES, Analysis
from qosinspect.analysis.tables import SCHEMAS
from qosinspect.testing.events import EventBuilder

MS = 1_000_000


def _scenario() -> EventBuilder:
    """A bit of everything: both directions, QoS 0/1/2, a reconnect with redelivery, a
    subscriber, an orphan ack, a TCP retransmission."""
    b = EventBuilder()
    sub = b.client("sub", clean_start=False)
    b.subscribe(sub, 1, ("t/#", 2))
    pub = b.client("pub")
    b.publish(pub, "c2b", "t/0", b"zero")
    b.publish(sub, "b2c", "t/0", b"zero")
    b.qos1(pub, "c2b", "t/1", b"one", 1, ack_ms=3)
    b.publish(sub, "b2c", "t/1", b"one", qos=1, packet_id=1)
    b.close(sub, "rst")
    b.tcp_retransmission(pub, "c2b", 30)
    b.qos2(pub, "c2b", "t/2", b"two", 2, step_ms=2)
    sub2 = b.client("sub", clean_start=False, session_present=True, dt_ms=50)
    b.publish(sub2, "b2c", "t/1", b"one", qos=1, packet_id=1, dup=True)
    b.puback(sub2, "c2b", 1)
    b.qos2(sub2, "b2c", "t/2", b"two", 2)
    b.puback(pub, "b2c", 99)
    b.disconnect(pub)
    b.close(pub, "fin", closed_by="c2b")
    return b


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return qosinspect.analyze(_scenario().events)


@pytest.mark.parametrize("name", TABLES)
def test_every_table_has_its_declared_columns_and_dtypes(analysis: Analysis, name: str) -> None:
    df = getattr(analysis, name)
    assert isinstance(df, pd.DataFrame)
    declared = [(col, dtype) for col, dtype, _ in SCHEMAS[name]]
    assert [(col, str(df[col].dtype)) for col in df.columns] == declared


@pytest.mark.parametrize("name", TABLES)
def test_empty_analysis_has_the_same_schema(name: str) -> None:
    df = getattr(qosinspect.analyze([]), name)
    assert len(df) == 0
    assert [str(t) for t in df.dtypes] == [dtype for _, dtype, _ in SCHEMAS[name]]


def test_exchange_rows(analysis: Analysis) -> None:
    ex = analysis.exchanges
    assert list(ex["ex_id"]) == sorted(ex["ex_id"])
    assert list(zip(ex["client_id"], ex["direction"], ex["qos"], ex["outcome"],
                    strict=True)) == [
        ("pub", "c2b", 0, "complete"), ("sub", "b2c", 0, "complete"),
        ("pub", "c2b", 1, "complete"), ("sub", "b2c", 1, "complete_after_reconnect"),
        ("pub", "c2b", 2, "complete"), ("sub", "b2c", 2, "complete")]
    q1 = ex.iloc[2]
    assert q1["latency_puback"] == pd.Timedelta(3, "ms") and q1["latency_ms"] == 3.0
    assert q1["t_publish"].tz is not None and str(q1["t_publish"].tz) == "UTC"
    q2 = ex.iloc[4]
    assert q2["latency_pubrec"] == q2["latency_pubrel"] == q2["latency_pubcomp"] == \
        pd.Timedelta(2, "ms")
    assert q2["latency_total"] == pd.Timedelta(6, "ms")
    assert pd.isna(ex.iloc[0]["packet_id"]) and ex.iloc[2]["packet_id"] == 1
    redelivered = ex.iloc[3]
    assert redelivered["dup_seen"] and redelivered["n_publish"] == 2
    assert redelivered["retransmissions"] == 1 and redelivered["spans_reconnect"]


def test_packets_link_to_exchanges(analysis: Analysis) -> None:
    p = analysis.packets
    pub = p[p["packet_type"] == "PUBLISH"]
    assert pub["ex_id"].notna().all()
    assert p.loc[p["packet_type"] == "PUBACK", "ex_id"].isna().sum() == 1  # the orphan
    assert int(p["resend"].sum()) == 1
    assert set(p["direction"].cat.categories) == {"c2b", "b2c"}
    assert p["qos"].isna().sum() == (p["packet_type"] != "PUBLISH").sum()  # only PUBLISH has one


def test_connections_sessions_reconnects(analysis: Analysis) -> None:
    c = analysis.connections
    assert list(c["client_id"]) == ["sub", "pub", "sub"]
    assert list(c["end"]) == ["rst", "disconnect", "end_of_capture"]
    assert c["duration"].notna().all() and c.loc[1, "tcp_retransmissions"] == 1
    s = analysis.sessions.set_index("session")
    assert s.loc["sub", "n_connections"] == 2 and s.loc["sub", "conn_ids"] == "0 2"
    (rc,) = analysis.reconnects.itertuples()
    assert rc.gap == pd.Timedelta(59, "ms") and rc.session_present  # close .. CONNECT
    assert rc.redelivered_publish == 1 and rc.unfinished_b2c == 1


def test_deliveries(analysis: Analysis) -> None:
    d = analysis.deliveries
    assert list(zip(d["topic"], d["status"], d["sub_qos"], strict=True)) == [
        ("t/0", "delivered", 0), ("t/1", "delivered", 1), ("t/1", "duplicate", 1),
        ("t/2", "delivered", 2)]
    assert (d["latency"] >= pd.Timedelta(0)).all() and not d["downgraded"].any()


def test_anomalies_and_tcp(analysis: Analysis) -> None:
    a = analysis.anomalies
    assert list(a["kind"]) == ["orphan_ack"] and a.loc[0, "source"] == "analysis"
    assert len(analysis.tcp_retransmissions) == 1


def test_summary_per_qos(analysis: Analysis) -> None:
    s = analysis.summary()
    assert list(s.index) == [0, 1, 2]
    assert list(s["publishes"]) == [2, 2, 2] and list(s["completed"]) == [2, 2, 2]
    assert s.loc[1, "retransmissions"] == 1 and s.loc[1, "dup_flagged"] == 1
    assert s.loc[1, "duplicates_delivered"] == 1
    assert s["publishes"].dtype == "int64" and s["latency_ms_max"].dtype == "float64"
    report = analysis.report()
    assert report["connections"] == 3 and report["reconnects"] == 1
    assert report["tcp_retransmissions"] == 1 and report["anomalies"] == {"orphan_ack": 1}


def test_import_qosinspect_stays_light() -> None:
    code = ("import sys, qosinspect; heavy = [m for m in ('pandas', 'numpy', 'matplotlib', "
            "'scapy') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_packets_of_some_connections_without_the_whole_table() -> None:
    fresh = qosinspect.analyze(_scenario().events)
    part = fresh.packets_of([0, 2])
    assert "packets" not in fresh.__dict__  # the whole table was not built
    whole = fresh.packets
    expected = whole[whole["conn_id"].isin([0, 2])].reset_index(drop=True)
    pd.testing.assert_frame_equal(part.reset_index(drop=True), expected)
    resent = fresh.packets_of(resend_only=True)
    assert len(resent) == 1 and bool(resent["resend"].iloc[0])
    assert len(fresh.packets_of([1], resend_only=True)) == 0


def test_some_exchange_columns_equal_the_whole_table(analysis: Analysis) -> None:
    from qosinspect.analysis.tables import exchanges_frame

    cols = ["outcome", "ex_id", "latency_ms", "generation", "client_id", "t_pubcomp"]
    part = exchanges_frame(analysis.result, cols)
    assert list(part.columns) == [c for c in analysis.exchanges.columns if c in cols]
    pd.testing.assert_frame_equal(part, analysis.exchanges[list(part.columns)])
    with pytest.raises(KeyError, match="no exchange column"):
        exchanges_frame(analysis.result, ["nope"])


def test_missing_values_are_typed_missing() -> None:
    b = EventBuilder()
    c = b.open(handshake_seen=False)          # no CONNECT: no client id, no keep alive
    b.publish(c, "b2c", "t", b"x", qos=1, packet_id=3)
    a = qosinspect.analyze(b.events)
    conn = a.connections.iloc[0]
    assert pd.isna(conn["client_id"]) and pd.isna(conn["keep_alive"])
    assert pd.isna(conn["clean_start"]) and pd.isna(conn["t_connect"])
    assert a.connections["keep_alive"].dtype == "Int32"
    ex = a.exchanges.iloc[0]
    assert ex["outcome"] == "open_at_end" and pd.isna(ex["t_end"]) and pd.isna(ex["latency_ms"])
    assert pd.isna(ex["latency_puback"]) and pd.isna(ex["puback_reason"])
    an = a.anomalies.iloc[0]
    assert an["kind"] == "missing_connect" and pd.isna(an["packet_id"])


def test_timestamps_keep_nanoseconds() -> None:
    from qosinspect.testing.events import T0

    b = EventBuilder(start_ns=T0 + 987_654_321)
    c = b.client("n")
    b.qos1(c, "c2b", "t", b"1", 1, ack_ms=0.000007)
    ex = qosinspect.analyze(b.events).exchanges.iloc[0]
    # opened, CONNECT, CONNACK, PUBLISH: one ms each
    assert ex["t_publish"].value % 1_000_000_000 == 987_654_321 + 4_000_000
    assert ex["t_puback"].value - ex["t_publish"].value == 7

"""What the analysis keeps of ended connections and idle sessions (issue 11 §9, issue 13
"Bounded, long-running"): an ended connection is a packed row at once, with every field of its
record kept exactly; a session with no connection stays whole for ``session_idle_timeout_ns`` of
packet time (a reconnection in time still joins its open exchanges), then is dropped, and that
is said."""

from __future__ import annotations

import dataclasses

import pytest

from qosinspect.analysis.conntable import FIELDS, ConnectionTable
from qosinspect.analysis.correlate import Correlator, correlate
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.analysis.records import Connection
from qosinspect.testing.events import EventBuilder

MINUTE = 60 * 10**9


def test_a_connection_record_survives_its_row_exactly() -> None:
    """Every field, None or set, comes back as it went in (the row is the only copy)."""
    full = Connection(
        conn_id=70_000, client="[2001:db8::1]:50000", broker="10.0.0.1:1883", transport="tls",
        sides_known=False, session=None, client_id="dev-1", assigned_client_id="auto-7",
        version=5, version_source="connect", keep_alive=65535, server_keep_alive=30,
        clean_start=False, session_expiry=2**32 - 1, username="u", password_present=True,
        will_topic="w/t", handshake_seen=True, attempt=False, t_open=1_700_000_000_123_456_789,
        t_connect=1_700_000_000_223_456_789, t_connack=1_700_000_000_323_456_789,
        connack_code=0x87, session_present=True, t_close=1_700_000_100_000_000_001,
        end="keepalive_expired", transport_end="rst", closed_by="b2c", disconnect_by="b2c",
        disconnect_reason=0x8D, t_disconnect=1_700_000_099_000_000_000,
        t_last_c2b=1_700_000_050_000_000_000, t_last_b2c=1_700_000_051_000_000_000,
        n_packets_c2b=2**40, n_packets_b2c=3, n_bytes_c2b=2**50, n_bytes_b2c=5,
        n_publish_c2b=6, n_publish_b2c=7, tcp_retransmissions=8, stream_gaps=9,
        unfinished_at_end=10, n_before_connect=11)
    empty = Connection(conn_id=3, client="10.0.0.2:1", broker="10.0.0.1:1883")
    t = ConnectionTable()
    t.add(full, -1, None, 0, 4, 6)
    t.add(empty, -1, None, 0, 0, 0)
    for rec in (full, empty):
        got, code, same = t.record(t.row_of(rec.conn_id))
        assert (code, same) == (-1, False)
        assert dataclasses.asdict(got) == dataclasses.asdict(rec)
    assert (t.get(70_000, "unfinished_c2b"), t.get(70_000, "unfinished_b2c")) == (4, 6)
    assert list(t.conn_ids()) == [3, 70_000] and len(t) == 2
    # the row's fields are the record's, in its order (the record is made positionally)
    names = [f.name for f in dataclasses.fields(Connection)]
    assert names == ["conn_id", "client", *(f[0] for f in FIELDS[:3]), "session", "client_id",
                     *(f[0] for f in FIELDS[3:])]


def test_an_ended_connection_is_released_at_once() -> None:
    """Before: every ConnState and Connection was kept until the end of the capture."""
    b = EventBuilder()
    conns = [b.client(f"c{i}") for i in range(3)]
    b.close(conns[0], "fin")
    b.close(conns[1], "rst")
    c = Correlator()
    c.consume(b.events)
    assert sorted(c.sess.conns) == [conns[2].conn_id]
    assert len(c.sess.table) == 2 and c.sess.n_connections_seen == 3
    r = c.finish()
    assert [(x.client_id, x.end) for x in r.connections] == [
        ("c0", "fin"), ("c1", "rst"), ("c2", "end_of_capture")]
    assert dict(r.conn_brokers) == {x.conn_id: 0 for x in conns}


def test_late_events_on_an_ended_connection_still_count() -> None:
    """A TCP retransmission and an anomaly after the close (a lingering flow's late segments)
    land on the ended connection's record and rows, as before it was packed."""
    b = EventBuilder()
    c1 = b.client("late")
    b.close(c1, "fin")
    b.tcp_retransmission(c1, "c2b", 10)
    b.anomaly(c1, "c2b", "malformed", "late bytes")
    b.tcp_retransmission(c1, "c2b", 10)
    r = correlate(b.events)
    (conn,) = r.connections
    assert (conn.tcp_retransmissions, conn.end, conn.client_id) == (2, "fin", "late")
    (a,) = r.anomalies
    assert (a.kind, a.conn_id, a.session) == ("malformed", c1.conn_id, "late")


def _drop_and_return(gap_s: float) -> tuple[Correlator, object]:
    b = EventBuilder()
    c1 = b.client("p", clean_start=False)
    b.publish(c1, "c2b", "t", b"1", qos=1, packet_id=1)
    b.close(c1, "rst")
    b.advance(gap_s)
    c2 = b.client("p", clean_start=False, session_present=True)
    b.publish(c2, "c2b", "t", b"1", qos=1, packet_id=1, dup=True)
    b.puback(c2, "b2c", 1)
    c = Correlator(AnalysisOptions(session_idle_timeout_ns=10 * MINUTE))
    c.consume(b.events)
    return c, c.finish()


def test_a_session_waits_for_its_reconnection_until_the_idle_timeout() -> None:
    _, r = _drop_and_return(9 * 60)
    (ex,) = r.exchange_objects()  # type: ignore[attr-defined]
    assert ex.outcome == "complete_after_reconnect"
    assert r.n_sessions_dropped == 0 and len(r.sessions) == 1  # type: ignore[attr-defined]


def test_a_session_idle_past_the_timeout_is_dropped_and_said() -> None:
    """Past the timeout the session's open exchange is no longer followed (``evicted``,
    counted), a note says so with its frame, and the client's next CONNECT starts a new
    session: its DUP re-send is a new exchange."""
    c, r = _drop_and_return(11 * 60)
    outcomes = [e.outcome for e in r.exchange_objects()]  # type: ignore[attr-defined]
    assert outcomes == ["evicted", "complete"]
    assert r.n_sessions_dropped == 1 and r.n_evicted == 1  # type: ignore[attr-defined]
    assert [s.session for s in r.sessions] == ["p", "p"]  # type: ignore[attr-defined]
    (note,) = [a for a in r.anomalies if a.kind == "sessions_dropped"]  # type: ignore
    assert note.severity == "note" and note.frame > 0 and "1 persistent" in note.detail
    assert (c.sess.by_code[0].done, c.sess.sessions[0]["p"].code) == (None, 1)


@pytest.mark.parametrize("persistent", [False, True])
def test_idle_sessions_are_bounded_over_a_long_run(persistent: bool) -> None:
    """A long run of short-lived clients, each with its own id: the sessions being followed
    stay those of the last timeout, whatever the run's length."""
    b = EventBuilder()
    c = Correlator(AnalysisOptions(session_idle_timeout_ns=MINUTE))
    for i in range(200):
        k = b.client(f"dev-{i}", clean_start=not persistent)
        b.publish(k, "c2b", "t", b"x", qos=1, packet_id=1)
        b.close(k, "fin")
        b.advance(10)
        c.consume(b.events)
        b.events.clear()
        assert sum(map(len, c.sess.sessions)) <= 8 and not c.sess.conns
    r = c.finish()
    assert r.n_sessions_dropped >= 190 and len(r.sessions) == 200
    assert len(r.connections) == 200

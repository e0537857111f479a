"""Connections and sessions: how connections end, what a session keeps, reconnections."""

from __future__ import annotations

import pytest

from qosinspect.analysis.correlate import CorrelationResult, correlate
from qosinspect.mqtt.packets import Connect
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.events import EventBuilder


def kinds(r: CorrelationResult) -> list[str]:
    return [a.kind for a in r.anomalies]


@pytest.mark.parametrize("silence,expected", [
    (89.999, "fin"),          # just under 1.5 x 60 s
    (90.0, "fin"),            # exactly 1.5 x: not beyond it
    (90.001, "keepalive_expired"),
])
def test_keepalive_boundary(silence: float, expected: str) -> None:
    """[MQTT-3.1.2-24]: expired only when the silence is *beyond* 1.5 x the keep alive."""
    b = EventBuilder()
    c = b.client("k", keep_alive=60, connack=False)
    t_last = b.now  # the CONNECT is the client's last packet
    b.connack(c)
    b.close(c, "fin", at_ns=t_last + round(silence * 1e9))
    assert correlate(b.events).connections[0].end == expected


def test_pingreq_keeps_a_connection_alive() -> None:
    b = EventBuilder()
    c = b.client("k", keep_alive=10)
    for _ in range(5):
        b.advance(9)
        b.ping(c)
    b.advance(14)
    b.close(c, "rst", closed_by="b2c")
    assert correlate(b.events).connections[0].end == "rst"


@pytest.mark.parametrize("how", ["fin", "rst", "idle", "reused"])
def test_transport_ends_pass_through(how: str) -> None:
    b = EventBuilder()
    c = b.client("t", keep_alive=0)
    b.close(c, how, closed_by="c2b")
    (conn,) = correlate(b.events).connections
    assert (conn.end, conn.transport_end, conn.closed_by) == (how, how, "c2b")


def test_disconnect_wins_over_silence() -> None:
    b = EventBuilder()
    c = b.client("d", keep_alive=5)
    b.advance(100)
    b.disconnect(c)
    b.close(c, "fin", closed_by="c2b")
    (conn,) = correlate(b.events).connections
    assert conn.end == "disconnect" and conn.disconnect_by == "c2b"
    assert conn.disconnect_reason is None  # MQTT 3.1.1 DISCONNECT has no reason code


def test_broker_disconnect_keep_alive_timeout_v5() -> None:
    b = EventBuilder()
    c = b.client("v5", version=5)
    b.disconnect(c, "b2c", 0x8D)
    b.close(c, "fin", closed_by="b2c")
    (conn,) = correlate(b.events).connections
    assert conn.end == "keepalive_expired" and conn.disconnect_reason == 0x8D


def test_connection_record_fields() -> None:
    b = EventBuilder()
    c = b.open(version=5, client=("192.0.2.7", 40000))
    b.send(c, "c2b", Connect("dev-1", 5, False, 30, "alice", b"pw",
                             properties=Properties.of(session_expiry_interval=3600)))
    b.connack(c, session_present=True)
    (conn,) = correlate(b.events).connections
    assert (conn.client, conn.broker) == ("192.0.2.7:40000", "10.0.0.1:1883")
    assert (conn.client_id, conn.version, conn.version_source) == ("dev-1", 5, "connect")
    assert (conn.keep_alive, conn.clean_start, conn.session_expiry) == (30, False, 3600)
    assert (conn.username, conn.password_present, conn.accepted) == ("alice", True, True)
    assert conn.session_present is True and conn.handshake_seen is True
    assert conn.t_connack is not None and conn.t_connect is not None
    assert conn.t_connack > conn.t_connect


def test_version_from_the_decoder_without_connect() -> None:
    b = EventBuilder()
    c = b.open(version=5, handshake_seen=False)
    b.ping(c)
    (conn,) = correlate(b.events).connections
    assert (conn.version, conn.version_source, conn.n_before_connect) == (5, "decoder", 2)


def test_v5_session_expiry_decides_what_survives() -> None:
    """MQTT 5: clean start 0 without session expiry ends the session with the connection."""
    b = EventBuilder()
    c1 = b.client("e", version=5, clean_start=False)  # no Session Expiry Interval: 0
    b.publish(c1, "c2b", "t", b"x", qos=1, packet_id=1)
    b.close(c1, "rst")
    t_close = b.now
    b.client("e", version=5, clean_start=False, session_expiry=60)
    r = correlate(b.events)
    (ex,) = r.exchange_objects()
    assert ex.outcome == "abandoned" and ex.t_end == t_close
    assert r.reconnects[0].abandoned == 1 and r.sessions[0].persistent is True


def test_v5_disconnect_can_extend_the_session() -> None:
    b = EventBuilder()
    c1 = b.client("e", version=5, clean_start=False)
    b.publish(c1, "b2c", "t", b"x", qos=1, packet_id=1)
    b.disconnect(c1, session_expiry=120)
    b.close(c1, "fin")
    c2 = b.client("e", version=5, clean_start=False, session_present=True)
    b.publish(c2, "b2c", "t", b"x", qos=1, packet_id=1, dup=True)
    b.puback(c2, "c2b", 1)
    r = correlate(b.events)
    assert r.exchange_objects()[0].outcome == "complete_after_reconnect"


def test_second_connect_is_an_anomaly() -> None:
    b = EventBuilder()
    c = b.client("twice")
    b.connect(c, "twice-again")
    r = correlate(b.events)
    assert kinds(r) == ["second_connect"] and r.connections[0].client_id == "twice"
    assert [s.session for s in r.sessions] == ["twice"]


def test_empty_client_ids_are_sessions_of_their_own() -> None:
    b = EventBuilder()
    c1 = b.client("")
    b.qos1(c1, "c2b", "t", b"1", 1)
    c2 = b.client("")
    b.qos1(c2, "c2b", "t", b"2", 1)
    r = correlate(b.events)
    assert [s.session for s in r.sessions] == [f"conn:{c1.conn_id}", f"conn:{c2.conn_id}"]
    assert [s.client_id for s in r.sessions] == ["", ""] and r.reconnects == []


def test_refused_connect_and_a_later_accepted_one() -> None:
    b = EventBuilder()
    c1 = b.client("pw", code=5)
    b.close(c1, "fin", closed_by="b2c")
    b.client("pw")
    r = correlate(b.events)
    assert [c.accepted for c in r.connections] == [False, True]
    (rc,) = r.reconnects
    assert rc.cause == "fin" and rc.session_present is False


def test_reconnect_records_the_drop_and_what_was_left() -> None:
    b = EventBuilder()
    c1 = b.client("r", clean_start=False)
    b.publish(c1, "c2b", "a", b"1", qos=1, packet_id=1)
    b.publish(c1, "b2c", "b", b"2", qos=2, packet_id=1)
    b.pubrec(c1, "c2b", 1)
    b.publish(c1, "b2c", "c", b"3", qos=2, packet_id=2)
    b.disconnect(c1)
    b.close(c1, "fin")
    t_drop = b.now
    b.advance(5)
    c2 = b.client("r", clean_start=False, session_present=True)
    b.publish(c2, "c2b", "a", b"1", qos=1, packet_id=1, dup=True)
    b.puback(c2, "b2c", 1)
    b.pubrel(c2, "b2c", 1)                      # continues the flow after PUBREC
    b.pubcomp(c2, "c2b", 1)
    b.publish(c2, "b2c", "c", b"3", qos=2, packet_id=2, dup=True)
    r = correlate(b.events)
    (rc,) = r.reconnects
    assert (rc.cause, rc.t_drop, rc.unfinished_c2b, rc.unfinished_b2c) == ("disconnect", t_drop,
                                                                           1, 2)
    assert (rc.redelivered_publish, rc.redelivered_pubrel, rc.resumed) == (2, 0, 2)
    assert r.connections[0].unfinished_at_end == 3
    out = {e.topic: e.outcome for e in r.exchange_objects()}
    assert out == {"a": "complete_after_reconnect", "b": "complete_after_reconnect",
                   "c": "open_at_end"}


def test_session_record() -> None:
    b = EventBuilder()
    c1 = b.client("s", clean_start=False)
    b.qos1(c1, "c2b", "t", b"1", 1)
    b.qos1(c1, "b2c", "t", b"1", 1)
    b.close(c1, "fin")
    t_close = b.now
    b.client("s", clean_start=False, session_present=True)
    r = correlate(b.events)
    (s,) = r.sessions
    assert (s.session, s.client_id, s.persistent) == ("s", "s", True)
    assert (s.n_connections, s.n_reconnects) == (2, 1)
    assert (s.n_exchanges_c2b, s.n_exchanges_b2c) == (1, 1)
    assert s.t_first is not None and s.t_last is not None and s.t_last > t_close


def test_suback_failure_sets_no_expectation() -> None:
    import qosinspect

    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("denied", 1), ("ok", 1), granted=(0x80, 1))
    p = b.client("p")
    b.publish(p, "c2b", "denied", b"x")
    b.publish(p, "c2b", "ok", b"y")
    d = qosinspect.analyze(b.events).deliveries
    assert list(zip(d["topic"], d["status"], strict=True)) == [("ok", "not_delivered")]


def test_acks_of_subscribe_and_unsubscribe_without_request() -> None:
    from qosinspect.mqtt.packets import SubAck, UnsubAck

    b = EventBuilder()
    c = b.client("x")
    b.send(c, "b2c", SubAck(4, (0,)))
    b.send(c, "b2c", UnsubAck(5))
    r = correlate(b.events)
    assert kinds(r) == ["orphan_ack", "orphan_ack"]
    assert [a.packet_id for a in r.anomalies] == [4, 5]


def test_connection_without_events_of_its_own_is_closed_at_end_of_capture() -> None:
    b = EventBuilder()
    b.open()
    r = correlate(b.events)
    (conn,) = r.connections
    assert conn.end == "end_of_capture" and conn.session is None and r.sessions == []


def _resends_by_session(r: CorrelationResult) -> tuple[dict[str, int], dict[str, int]]:
    """(sessions table's ``n_resends``, exchanges table's ``retransmissions`` summed), per
    session."""
    from qosinspect.analysis.tables import exchanges_frame, sessions_frame

    sessions = sessions_frame(r)
    ex = exchanges_frame(r)
    mine = {str(k): int(v) for k, v in zip(sessions["session"], sessions["n_resends"],
                                           strict=True)}
    summed = {str(k): int(v) for k, v in
              ex.groupby("session", observed=True)["retransmissions"].sum().items()}
    return mine, {k: summed.get(k, 0) for k in mine}


def test_session_resends_count_every_resend_late_ones_too() -> None:
    """A session's ``n_resends`` (the live per-client re-sends) counts each PUBLISH, PUBREC
    and PUBREL sent again, on an open exchange or joining one already finished, as the
    exchanges' ``retransmissions`` do."""
    b = EventBuilder()
    c = b.client("dev")
    b.publish(c, "c2b", "t", b"1", qos=1, packet_id=1)
    b.publish(c, "c2b", "t", b"1", qos=1, packet_id=1, dup=True)     # open: +1
    b.puback(c, "b2c", 1)
    b.publish(c, "c2b", "t", b"1", qos=1, packet_id=1, dup=True)     # after PUBACK: +1
    b.publish(c, "c2b", "u", b"2", qos=2, packet_id=2)
    b.pubrec(c, "b2c", 2)
    b.pubrec(c, "b2c", 2)                                            # open: +1
    b.pubrel(c, "c2b", 2)
    b.pubcomp(c, "b2c", 2)
    b.pubrel(c, "c2b", 2)                                            # after PUBCOMP: +1
    b.pubcomp(c, "b2c", 2)                                           # not a re-send
    other = b.client("quiet")
    b.qos1(other, "c2b", "t", b"3", 1)
    r = correlate(b.events)
    mine, summed = _resends_by_session(r)
    assert mine == {"dev": 4, "quiet": 0}
    assert mine == summed


def test_session_resends_are_the_exchanges_on_real_captures() -> None:
    """Every shipped capture and the community ones: per session, ``n_resends`` equals the
    exchanges' ``retransmissions`` summed."""
    import json

    from qosinspect.analysis.api import analyze_capture
    from qosinspect.testing.tools import PROJECT_ROOT, community_captures

    shipped = json.loads((PROJECT_ROOT / "captures" / "captures.json").read_text())
    runs = [(PROJECT_ROOT / "captures" / e["file"], tuple(e["ports"])) for e in shipped
            if not e["file"].endswith("tls.pcap")]
    runs += community_captures()
    total = 0
    for path, ports in runs:
        r = analyze_capture(path, ports=ports).result
        mine, summed = _resends_by_session(r)
        assert mine == summed, path.name
        total += sum(mine.values())
    assert total > 0

"""The correlator on scripted event sequences with known answers, one test per rule."""

from __future__ import annotations

from qosinspect.analysis.correlate import CorrelationResult, Correlator, correlate
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.analysis.records import Exchange
from qosinspect.mqtt.packets import Publish
from qosinspect.testing.events import T0, EventBuilder

MS = 1_000_000


def exchanges(r: CorrelationResult) -> list[Exchange]:
    return r.exchange_objects()


def kinds(r: CorrelationResult) -> list[str]:
    return [a.kind for a in r.anomalies]


def test_qos1_complete_with_step_times() -> None:
    b = EventBuilder()
    c = b.client("s1")
    b.publish(c, "c2b", "a/b", b"hello", qos=1, packet_id=7)
    t_pub = b.now
    b.puback(c, "b2c", 7, dt_ms=12)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert (ex.qos, ex.direction, ex.packet_id, ex.topic, ex.client_id) == (1, "c2b", 7, "a/b",
                                                                              "s1")
    assert ex.outcome == "complete"
    assert ex.t_publish == t_pub and ex.t_puback == t_pub + 12 * MS
    assert ex.n_publish == 1 and ex.n_puback == 1 and ex.puback_reason == 0
    assert ex.last_step == "puback" and ex.retransmissions == 0
    assert kinds(r) == []


def test_qos2_complete_all_steps() -> None:
    b = EventBuilder()
    c = b.client("s1")
    b.qos2(c, "b2c", "t", b"x", 3, step_ms=5)
    (ex,) = exchanges(correlate(b.events))
    assert ex.direction == "b2c" and ex.outcome == "complete" and ex.last_step == "pubcomp"
    assert ex.t_pubrec - ex.t_publish == 5 * MS  # type: ignore[operator]
    assert ex.t_pubrel - ex.t_pubrec == 5 * MS  # type: ignore[operator]
    assert ex.t_pubcomp - ex.t_pubrel == 5 * MS  # type: ignore[operator]
    assert (ex.n_pubrec, ex.n_pubrel, ex.n_pubcomp) == (1, 1, 1)


def test_packet_ids_in_both_directions_are_independent() -> None:
    """[MQTT-2.2.1-4]: the client's id 1 and the broker's id 1 are two exchanges at once."""
    b = EventBuilder()
    c = b.client("s1")
    b.publish(c, "c2b", "up", b"1", qos=2, packet_id=1)
    b.publish(c, "b2c", "down", b"2", qos=1, packet_id=1)
    b.pubrec(c, "b2c", 1)      # for the client's QoS 2
    b.puback(c, "c2b", 1)      # for the broker's QoS 1
    b.pubrel(c, "c2b", 1)
    b.pubcomp(c, "b2c", 1)
    r = correlate(b.events)
    up, down = exchanges(r)
    assert (up.direction, up.topic, up.outcome, up.n_pubrec) == ("c2b", "up", "complete", 1)
    assert (down.direction, down.topic, down.outcome, down.n_puback) == ("b2c", "down",
                                                                         "complete", 1)
    assert kinds(r) == []


def test_finished_id_reused_starts_a_new_generation() -> None:
    b = EventBuilder()
    c = b.client("s1")
    b.qos1(c, "c2b", "t", b"first", 1)
    b.qos1(c, "c2b", "t", b"second", 1)
    b.qos1(c, "c2b", "t", b"second", 1)  # same content, DUP=0: a new message too
    r = correlate(b.events)
    gens = [(e.packet_id, e.generation, e.outcome) for e in exchanges(r)]
    assert gens == [(1, 0, "complete"), (1, 1, "complete"), (1, 2, "complete")]
    assert kinds(r) == []


def test_id_reused_while_in_flight_is_an_anomaly() -> None:
    b = EventBuilder()
    c = b.client("s1")
    b.publish(c, "c2b", "t", b"one", qos=1, packet_id=4)
    b.publish(c, "c2b", "t", b"two", qos=1, packet_id=4)
    b.puback(c, "b2c", 4)
    r = correlate(b.events)
    first, second = exchanges(r)
    assert first.outcome == "protocol_error" and first.generation == 0
    assert second.outcome == "complete" and second.generation == 1
    assert kinds(r) == ["packet_id_in_use"]
    assert r.anomalies[0].ex_id == first.ex_id


def test_silent_resend_without_dup_is_a_retransmission() -> None:
    """Several clients forget DUP [MQTT-3.3.1-1]: same id and message again is a re-send."""
    b = EventBuilder()
    c = b.client("s1")
    b.publish(c, "c2b", "t", b"m", qos=1, packet_id=9)
    t0 = b.now
    b.publish(c, "c2b", "t", b"m", qos=1, packet_id=9, dt_ms=1000)
    b.puback(c, "b2c", 9)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert (ex.n_publish, ex.n_dup, ex.retransmissions) == (2, 0, 1)
    assert ex.t_publish == t0 and ex.t_publish_last == t0 + 1000 * MS  # never overwritten
    assert kinds(r) == ["resend_without_dup"]


def test_dup_resend_on_the_same_connection() -> None:
    b = EventBuilder()
    c = b.client("s1")
    b.publish(c, "b2c", "t", b"m", qos=2, packet_id=2)
    b.publish(c, "b2c", "t", b"m", qos=2, packet_id=2, dup=True)
    b.pubrec(c, "c2b", 2)
    b.pubrec(c, "c2b", 2)
    b.pubrel(c, "b2c", 2)
    b.pubcomp(c, "c2b", 2)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert (ex.n_publish, ex.n_dup, ex.n_pubrec, ex.retransmissions) == (2, 1, 2, 2)
    assert ex.outcome == "complete" and not ex.spans_reconnect
    assert kinds(r) == []


def test_dup_after_reconnect_joins_the_open_exchange() -> None:
    b = EventBuilder()
    c1 = b.client("dev", clean_start=False)
    b.publish(c1, "b2c", "t", b"m", qos=1, packet_id=5)
    b.close(c1, "rst", closed_by="c2b")
    t_drop = b.now
    c2 = b.client("dev", clean_start=False, session_present=True, dt_ms=2000)
    b.publish(c2, "b2c", "t", b"m", qos=1, packet_id=5, dup=True)
    b.puback(c2, "c2b", 5)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert ex.outcome == "complete_after_reconnect" and ex.spans_reconnect
    assert (ex.conn_id, ex.last_conn_id, ex.n_publish, ex.n_dup) == (c1.conn_id, c2.conn_id,
                                                                     2, 1)
    (rc,) = r.reconnects
    assert (rc.prev_conn_id, rc.next_conn_id, rc.cause) == (c1.conn_id, c2.conn_id, "rst")
    assert rc.session_present is True and rc.t_drop == t_drop
    assert rc.gap_ns == 2001 * MS
    assert (rc.unfinished_b2c, rc.unfinished_c2b, rc.redelivered_publish, rc.resumed) == (
        1, 0, 1, 1)
    assert kinds(r) == []


def test_pubrel_resent_after_reconnect() -> None:
    """[MQTT-4.4.0-1]: on resumption the sender re-sends PUBREL for flows past PUBREC."""
    b = EventBuilder()
    c1 = b.client("dev", clean_start=False)
    b.publish(c1, "c2b", "t", b"m", qos=2, packet_id=8)
    b.pubrec(c1, "b2c", 8)
    b.pubrel(c1, "c2b", 8)
    t_rel = b.now
    b.close(c1, "fin", closed_by="b2c")
    c2 = b.client("dev", clean_start=False, session_present=True)
    b.pubrel(c2, "c2b", 8)
    t_rel2 = b.now
    b.pubcomp(c2, "b2c", 8)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert ex.n_pubrel == 2 and ex.t_pubrel == t_rel and ex.t_pubrel_last == t_rel2
    assert ex.outcome == "complete_after_reconnect" and ex.retransmissions == 1
    (rc,) = r.reconnects
    assert (rc.redelivered_pubrel, rc.redelivered_publish, rc.resumed) == (1, 0, 1)


def test_pubrel_resend_on_same_connection_keeps_first_time() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.publish(c, "c2b", "t", b"m", qos=2, packet_id=1)
    b.pubrec(c, "b2c", 1)
    b.pubrel(c, "c2b", 1)
    first = b.now
    b.pubrel(c, "c2b", 1, dt_ms=3000)
    b.pubrel(c, "c2b", 1, dt_ms=3000)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert ex.t_pubrel == first and ex.t_pubrel_last == first + 6000 * MS and ex.n_pubrel == 3
    assert ex.outcome == "open_at_end" and ex.last_step == "pubrel"


def test_orphan_ack() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.puback(c, "b2c", 77)
    b.pubcomp(c, "c2b", 78)
    r = correlate(b.events)
    assert exchanges(r) == []
    assert kinds(r) == ["orphan_ack", "orphan_ack"]
    assert [a.packet_id for a in r.anomalies] == [77, 78]


def test_qos2_stuck_at_each_step_is_incomplete_at_end_of_capture() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.publish(c, "c2b", "t", b"1", qos=2, packet_id=1)          # no response
    b.publish(c, "c2b", "t", b"2", qos=2, packet_id=2)
    b.pubrec(c, "b2c", 2)                                        # stuck after PUBREC
    b.publish(c, "c2b", "t", b"3", qos=2, packet_id=3)
    b.pubrec(c, "b2c", 3)
    b.pubrel(c, "c2b", 3)                                        # stuck after PUBREL
    r = correlate(b.events)
    ex = exchanges(r)
    assert [(e.packet_id, e.outcome, e.last_step) for e in ex] == [
        (1, "open_at_end", "publish"), (2, "open_at_end", "pubrec"), (3, "open_at_end", "pubrel")]
    assert all(e.t_end is None for e in ex)
    (conn,) = r.connections
    assert conn.end == "end_of_capture" and conn.unfinished_at_end == 3


def test_clean_session_disconnect_abandons_open_exchanges() -> None:
    b = EventBuilder()
    c = b.client("s", clean_start=True)
    b.publish(c, "c2b", "t", b"1", qos=1, packet_id=1)
    b.disconnect(c)
    b.close(c, "fin", closed_by="c2b")
    t_close = b.now
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert ex.outcome == "abandoned" and ex.t_end == t_close
    assert r.connections[0].end == "disconnect" and r.connections[0].unfinished_at_end == 1


def test_persistent_session_that_never_comes_back_is_abandoned() -> None:
    b = EventBuilder()
    c = b.client("s", clean_start=False)
    b.publish(c, "b2c", "t", b"1", qos=1, packet_id=1)
    b.close(c, "rst")
    t_close = b.now
    b.advance(10)
    other = b.client("other")
    b.ping(other)
    (ex,) = exchanges(correlate(b.events))
    assert ex.outcome == "abandoned" and ex.t_end == t_close


def test_session_not_present_after_reconnect_abandons() -> None:
    b = EventBuilder()
    c1 = b.client("dev", clean_start=False)
    b.publish(c1, "c2b", "t", b"1", qos=1, packet_id=1)
    b.close(c1, "rst")
    c2 = b.client("dev", clean_start=False, session_present=False)
    b.puback(c2, "b2c", 1)  # no longer known: an orphan
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert ex.outcome == "abandoned"
    (rc,) = r.reconnects
    assert rc.session_present is False and rc.abandoned == 1 and rc.resumed == 0
    assert kinds(r) == ["orphan_ack"]


def test_clean_start_on_reconnect_abandons() -> None:
    """[MQTT-3.1.2-4]: clean start discards the session the broker had."""
    b = EventBuilder()
    c1 = b.client("dev", clean_start=False)
    b.publish(c1, "c2b", "t", b"1", qos=2, packet_id=1)
    b.close(c1, "rst")
    b.client("dev", clean_start=True)
    r = correlate(b.events)
    assert exchanges(r)[0].outcome == "abandoned"
    assert r.reconnects[0].abandoned == 1 and r.reconnects[0].clean_start is True


def test_keepalive_expiry_inferred_from_silence() -> None:
    """[MQTT-3.1.2-24]: the broker closes after 1.5 x keep alive without a client packet."""
    b = EventBuilder()
    c1 = b.client("quiet", keep_alive=60)
    b.advance(91)
    b.close(c1, "fin", closed_by="b2c")
    c2 = b.client("talkative", keep_alive=60)
    b.advance(89)
    b.close(c2, "fin", closed_by="b2c")
    c3 = b.client("none", keep_alive=0)
    b.advance(1000)
    b.close(c3, "fin", closed_by="b2c")
    r = correlate(b.events)
    assert [(c.client_id, c.end, c.transport_end) for c in r.connections] == [
        ("quiet", "keepalive_expired", "fin"), ("talkative", "fin", "fin"),
        ("none", "fin", "fin")]


def test_server_keep_alive_overrides_and_v5_disconnect_reasons() -> None:
    from qosinspect.mqtt.properties import Properties

    b = EventBuilder()
    c = b.open(version=5)
    b.connect(c, "v5", keep_alive=600)
    b.connack(c, properties=Properties.of(server_keep_alive=10))
    b.advance(16)
    b.close(c, "rst", closed_by="b2c")
    c2 = b.client("v5b", version=5)
    b.disconnect(c2, "b2c", 0x8E)
    b.close(c2, "fin")
    c3 = b.client("v5c", version=5)
    b.disconnect(c3, "c2b", 0x04)
    b.close(c3, "fin")
    r = correlate(b.events)
    ends = [(c.end, c.disconnect_by, c.disconnect_reason) for c in r.connections]
    assert ends == [("keepalive_expired", None, None), ("taken_over", "b2c", 0x8E),
                    ("disconnect", "c2b", 0x04)]
    assert r.connections[0].server_keep_alive == 10


def test_session_takeover() -> None:
    """[MQTT-3.1.4-3]: a second CONNECT with the same client id takes the session over."""
    b = EventBuilder()
    c1 = b.client("dup-id", clean_start=False)
    b.publish(c1, "b2c", "t", b"x", qos=1, packet_id=3)
    c2 = b.client("dup-id", clean_start=False, session_present=True)
    b.close(c1, "fin", closed_by="b2c")
    b.publish(c2, "b2c", "t", b"x", qos=1, packet_id=3, dup=True)
    b.puback(c2, "c2b", 3)
    r = correlate(b.events)
    assert r.connections[0].end == "taken_over"
    (rc,) = r.reconnects
    assert rc.cause == "taken_over" and rc.unfinished_b2c == 1 and rc.gap_ns == 0
    assert exchanges(r)[0].outcome == "complete_after_reconnect"
    (sess,) = r.sessions
    assert sess.conn_ids == [c1.conn_id, c2.conn_id] and sess.n_reconnects == 1


def test_dup_on_a_finished_id_joins_the_finished_exchange() -> None:
    """mosquitto re-sends (DUP=1) a message whose PUBACK was lost with the connection."""
    b = EventBuilder()
    c1 = b.client("sub", clean_start=False)
    b.qos1(c1, "b2c", "t", b"m", 11)
    b.close(c1, "rst")
    c2 = b.client("sub", clean_start=False, session_present=True)
    b.publish(c2, "b2c", "t", b"m", qos=1, packet_id=11, dup=True)
    b.puback(c2, "c2b", 11)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert (ex.n_publish, ex.n_dup, ex.dup_after_complete, ex.n_puback) == (2, 1, 1, 2)
    assert ex.outcome == "complete" and ex.spans_reconnect and ex.retransmissions == 1
    assert r.reconnects[0].redelivered_publish == 1
    assert kinds(r) == []


def test_wrong_ack_type_for_the_qos() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.publish(c, "c2b", "t", b"1", qos=2, packet_id=1)
    b.puback(c, "b2c", 1)
    b.publish(c, "c2b", "t", b"2", qos=1, packet_id=2)
    b.pubrec(c, "b2c", 2)
    r = correlate(b.events)
    assert [e.outcome for e in exchanges(r)] == ["protocol_error", "protocol_error"]
    assert kinds(r) == ["wrong_ack_type", "wrong_ack_type"]


def test_refused_by_reason_code() -> None:
    b = EventBuilder()
    c = b.client("s", version=5)
    b.publish(c, "c2b", "t", b"1", qos=1, packet_id=1)
    b.puback(c, "b2c", 1, 0x87)
    b.publish(c, "c2b", "t", b"2", qos=2, packet_id=2)
    b.pubrec(c, "b2c", 2, 0x80)  # [MQTT-4.3.3-4]: ends the flow, no PUBREL
    b.publish(c, "c2b", "t", b"3", qos=1, packet_id=3)
    b.puback(c, "b2c", 3, 0x10)  # no matching subscribers: success
    r = correlate(b.events)
    out = [(e.outcome, e.puback_reason, e.pubrec_reason) for e in exchanges(r)]
    assert out == [("refused", 0x87, None), ("refused", None, 0x80), ("complete", 0x10, None)]


def test_open_exchanges_are_capped_per_session() -> None:
    b = EventBuilder()
    c = b.client("flood")
    for pid in range(1, 6):
        b.publish(c, "c2b", "t", bytes([pid]), qos=1, packet_id=pid)
    b.puback(c, "b2c", 5)
    r = Correlator(AnalysisOptions(max_open_per_session=3)).feed_all(b.events)
    assert [e.outcome for e in exchanges(r)] == ["evicted", "evicted", "open_at_end",
                                                 "open_at_end", "complete"]
    assert kinds(r) == ["too_many_exchanges"] * 2 and r.n_evicted == 2
    # each said with the frame of the PUBLISH that went past the cap (issue 11 §9)
    assert [a.frame for a in r.anomalies] == [b.events[i].frame for i in (-3, -2)]


def test_capture_started_mid_session() -> None:
    b = EventBuilder()
    c = b.open(handshake_seen=False)
    b.ping(c)
    b.publish(c, "b2c", "t", b"x", qos=1, packet_id=1)
    b.puback(c, "c2b", 1)
    r = correlate(b.events)
    (conn,) = r.connections
    assert conn.n_before_connect == 4 and conn.session == f"conn:{c.conn_id}"
    assert kinds(r) == ["missing_connect"]
    assert "mid-session" in r.anomalies[0].detail
    assert exchanges(r)[0].outcome == "complete"


def test_missing_connect_reported_once_when_the_decoder_said_it() -> None:
    b = EventBuilder()
    c = b.open()
    b.anomaly(c, "c2b", "missing_connect", "first MQTT packet is PINGREQ")
    b.ping(c)
    r = correlate(b.events)
    assert kinds(r) == ["missing_connect"] and r.anomalies[0].source == "decoder"


def test_publish_before_connack_and_after_refusal() -> None:
    b = EventBuilder()
    c = b.client("early", connack=False)
    b.publish(c, "c2b", "t", b"x")
    b.connack(c)
    c2 = b.client("bad", code=5)
    b.publish(c2, "c2b", "t", b"y")
    r = correlate(b.events)
    assert kinds(r) == ["publish_before_connack", "publish_after_refused_connack"]
    assert r.connections[1].connack_code == 5 and r.connections[1].accepted is False


def test_qos0_is_an_exchange_and_invalid_qos_is_not() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.publish(c, "c2b", "t", b"zero")
    b.publish(c, "c2b", "t", b"bad-dup", dup=True)
    b.send(c, "c2b", Publish("t", b"q3", 3, False, False, 1))
    r = correlate(b.events)
    ex = exchanges(r)
    assert [(e.qos, e.outcome, e.packet_id, e.n_publish) for e in ex] == [
        (0, "complete", None, 1), (0, "complete", None, 1)]
    assert kinds(r) == ["dup_on_qos0", "invalid_qos"]


def test_tcp_retransmissions_are_counted_apart() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.publish(c, "c2b", "t", b"1", qos=1, packet_id=1)
    b.tcp_retransmission(c, "c2b", 20)
    b.tcp_retransmission(c, "b2c", 4)
    b.puback(c, "b2c", 1)
    r = correlate(b.events)
    assert r.connections[0].tcp_retransmissions == 2 and r.tcp_retransmissions.rows == 2
    assert exchanges(r)[0].retransmissions == 0


def test_stream_gap_is_one_anomaly() -> None:
    """The capture decoder says a gap twice (StreamGap, then an Anomaly): one row."""
    from qosinspect.events import Anomaly
    from qosinspect.mqtt.enums import Direction

    b = EventBuilder()
    c = b.client("s")
    b.gap(c, "c2b", 100)
    b.events.append(Anomaly(b.now, c.info, Direction.C2B, "stream_gap", "decoder words",
                            b.frame))
    b.gap(c, "b2c", 7)  # a source that only sends StreamGap still gets its anomaly
    r = correlate(b.events)
    assert kinds(r) == ["stream_gap", "stream_gap"] and r.connections[0].stream_gaps == 2
    assert r.anomalies[0].detail == "decoder words" and "7 bytes" in r.anomalies[1].detail


def test_anomaly_rows_are_capped_per_kind() -> None:
    b = EventBuilder()
    c = b.client("s")
    for pid in range(1, 11):
        b.puback(c, "b2c", pid)
    r = Correlator(AnalysisOptions(max_anomalies_per_kind=4)).feed_all(b.events)
    assert kinds(r) == ["orphan_ack"] * 4 and r.anomalies_suppressed == {"orphan_ack": 6}


def test_timestamps_are_integer_ns_from_the_events() -> None:
    b = EventBuilder(start_ns=T0 + 123)
    c = b.client("s")
    b.qos1(c, "c2b", "t", b"x", 1, ack_ms=0.000001)  # 1 ns later
    (ex,) = exchanges(correlate(b.events))
    assert ex.t_puback - ex.t_publish == 1  # type: ignore[operator]


def test_assigned_client_identifier_rekeys_the_session() -> None:
    from qosinspect.mqtt.properties import Properties

    b = EventBuilder()
    c = b.open(version=5)
    b.connect(c, "", clean_start=False, session_expiry=100)
    b.connack(c, properties=Properties.of(assigned_client_identifier="auto-1"))
    b.close(c, "rst")
    b.client("auto-1", version=5, clean_start=False, session_expiry=100, session_present=True)
    r = correlate(b.events)
    assert [s.session for s in r.sessions] == ["auto-1"]
    assert r.sessions[0].n_connections == 2 and len(r.reconnects) == 1


def test_thousands_of_dup_resends_after_a_reconnect_join_their_exchanges() -> None:
    """A client that stalled its acks re-sends everything (DUP) on its new connection, even
    messages the broker had acknowledged: each joins its finished exchange, however many."""
    b = EventBuilder(step_ns=1000)
    c1 = b.client("flaky", clean_start=False)
    n = 6000
    for pid in range(1, n + 1):
        b.qos1(c1, "c2b", "t", pid.to_bytes(2, "big"), pid, ack_ms=0.001)
    b.close(c1, "rst")
    c2 = b.client("flaky", clean_start=False, session_present=True)
    for pid in range(1, n + 1):
        b.publish(c2, "c2b", "t", pid.to_bytes(2, "big"), qos=1, packet_id=pid, dup=True)
        b.puback(c2, "b2c", pid)
    r = correlate(b.events, AnalysisOptions(packets=False, deliveries=False))
    assert r.exchanges.rows == n
    ex = exchanges(r)
    assert all(e.dup_after_complete == 1 and e.n_puback == 2 for e in ex)
    assert r.reconnects[0].redelivered_publish == n and kinds(r) == []


def test_done_index_dict_then_array() -> None:
    from qosinspect.analysis.state import DoneIndex

    idx = DoneIndex()
    for k in range(DoneIndex.DICT_LIMIT + 10):
        idx.put((k % 2) << 16 | k, k * 3)
    assert len(idx) == DoneIndex.DICT_LIMIT + 10
    assert idx.get(1 << 16 | 1) == 3 and idx.get(4) == 12 and idx.get(5) is None
    idx.put(5, 7)
    assert idx.get(5) == 7


def test_decoder_anomalies_pass_through_and_notes_are_apart() -> None:
    b = EventBuilder()
    c = b.client("s")
    b.anomaly(c, "c2b", "malformed", "PUBLISH: property length past the packet (offset 9)")
    b.anomaly(c, None, "encrypted", "TLS record at the start of the stream")
    b.anomaly(None, None, "ip_fragment", "fragmented IP datagram")
    r = correlate(b.events)
    assert [(a.kind, a.source, a.severity, a.conn_id) for a in r.anomalies] == [
        ("malformed", "decoder", "anomaly", c.conn_id), ("encrypted", "decoder", "note",
                                                         c.conn_id),
        ("ip_fragment", "decoder", "note", None)]
    import qosinspect

    report = qosinspect.analyze(b.events).report()
    assert report["anomalies"] == {"malformed": 1}
    assert report["notes"] == {"encrypted": 1, "ip_fragment": 1}


def test_pubcomp_with_a_failure_code_is_refused() -> None:
    """MQTT 5 PUBCOMP 0x92: the receiver did not know the packet id."""
    b = EventBuilder()
    c = b.client("s", version=5)
    b.publish(c, "c2b", "t", b"1", qos=2, packet_id=1)
    b.pubrec(c, "b2c", 1)
    b.pubrel(c, "c2b", 1)
    b.pubcomp(c, "b2c", 1, 0x92)
    (ex,) = exchanges(correlate(b.events))
    assert (ex.outcome, ex.pubcomp_reason, ex.last_step) == ("refused", 0x92, "pubcomp")


def test_dup_with_another_message_on_a_finished_id_is_a_new_exchange() -> None:
    """A DUP re-send of a message the capture never saw (it started later) is still a new
    exchange, flagged dup_first."""
    b = EventBuilder()
    c = b.client("s")
    b.qos1(c, "c2b", "t", b"old", 3)
    b.publish(c, "c2b", "t", b"new", qos=1, packet_id=3, dup=True)
    b.puback(c, "b2c", 3)
    first, second = exchanges(correlate(b.events))
    assert (first.dup_after_complete, second.generation, second.dup_first) == (0, 1, True)
    assert second.n_dup == 1 and second.retransmissions == 0


def test_late_acks_join_the_finished_qos2_exchange() -> None:
    """The broker re-sends PUBREL after the flow completed (its PUBCOMP was lost): the resent
    PUBREL and the second PUBCOMP join the exchange."""
    b = EventBuilder()
    c = b.client("s")
    b.qos2(c, "b2c", "t", b"m", 4)
    b.pubrel(c, "b2c", 4, dt_ms=500)
    b.pubcomp(c, "c2b", 4)
    r = correlate(b.events)
    (ex,) = exchanges(r)
    assert (ex.n_pubrel, ex.n_pubcomp, ex.outcome, ex.retransmissions) == (2, 2, "complete", 1)
    assert ex.t_pubrel_last is not None and ex.t_pubrel is not None
    assert ex.t_pubrel_last - ex.t_pubrel >= 500 * MS
    assert r.packets is not None
    resend = [r.packets.row(i)["resend"] for i in range(r.packets.rows)]
    assert resend[-2:] == [1, 0]  # the PUBREL again is a re-send, the PUBCOMP an answer
    assert kinds(r) == []


def test_total_cap_evicts_the_oldest_of_all_sessions() -> None:
    """Past ``max_open_total`` the oldest open exchanges go, whichever session holds them (as
    Zeek and the decoder's flow cap do: a new session is followed, a stale one aged out); the
    anomaly is the frame that went past the cap."""
    b = EventBuilder()
    a = b.client("a")
    z = b.client("z")
    b.publish(a, "c2b", "t", b"1", qos=1, packet_id=1)
    b.publish(a, "c2b", "t", b"2", qos=1, packet_id=2)
    b.publish(z, "c2b", "t", b"3", qos=1, packet_id=1)  # the third open exchange overall
    r = Correlator(AnalysisOptions(max_open_total=2)).feed_all(b.events)
    by_session = {(e.session, e.packet_id): e.outcome for e in exchanges(r)}
    assert by_session == {("a", 1): "evicted", ("a", 2): "open_at_end",
                          ("z", 1): "open_at_end"}
    (anomaly,) = r.anomalies
    assert (anomaly.kind, anomaly.session) == ("too_many_exchanges", "z")
    assert anomaly.frame == b.events[-1].frame and anomaly.frame > 0
    assert r.n_evicted == 1


def test_qos2_publish_resent_after_pubrec() -> None:
    """A sender may re-send PUBLISH until it gets PUBREC; after it, the re-send is still
    counted on the same exchange (not a new message)."""
    b = EventBuilder()
    c = b.client("s")
    b.publish(c, "c2b", "t", b"m", qos=2, packet_id=6)
    b.pubrec(c, "b2c", 6)
    b.publish(c, "c2b", "t", b"m", qos=2, packet_id=6, dup=True)
    b.pubrec(c, "b2c", 6)
    b.pubrel(c, "c2b", 6)
    b.pubcomp(c, "b2c", 6)
    (ex,) = exchanges(correlate(b.events))
    assert (ex.n_publish, ex.n_pubrec, ex.outcome, ex.retransmissions) == (2, 2, "complete", 2)


def test_unknown_direction_is_placed_by_packet_type() -> None:
    from qosinspect.events import MqttPacketEvent
    from qosinspect.mqtt.packets import PingReq, PingResp

    b = EventBuilder()
    c = b.open(handshake_seen=False)
    for pkt in (PingReq(), PingResp()):
        b.events.append(MqttPacketEvent(b.now, c.info, None, pkt, 2, 1, 1, 4))
    (conn,) = correlate(b.events).connections
    assert (conn.n_packets_c2b, conn.n_packets_b2c) == (1, 1)


def test_time_span_when_the_first_event_is_a_packet() -> None:
    """Events that start with an MQTT packet (a stream of events from elsewhere, no connection
    open first): the first packet sets the start and the end of the span, on the C path of
    report mode as well as in Python."""
    from qosinspect import _accel
    from qosinspect.events import MqttPacketEvent

    b = EventBuilder()
    c = b.client("x")
    b.qos1(c, "c2b", "t", b"1", 1)
    events = [e for e in b.events if isinstance(e, MqttPacketEvent)]
    first, last = events[0].ts_ns, events[-1].ts_ns
    assert first < last
    for detail in (True, False):
        r = correlate(events, AnalysisOptions(detail=detail))
        assert (r.t_first, r.t_last) == (first, last)
        with _accel.pure():
            r = correlate(events, AnalysisOptions(detail=detail))
        assert (r.t_first, r.t_last) == (first, last)

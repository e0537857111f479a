"""The pure broker engine, driven in memory with explicit timestamps (no sockets, no clock).

Each test cites the normative statement it checks.
"""

from __future__ import annotations

import pytest

from qosinspect.broker.auth import AccessControl, Authenticator
from qosinspect.broker.engine import NS, BrokerConfig, BrokerEngine, ClientConn
from qosinspect.errors import LocalProtocolError
from qosinspect.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from qosinspect.mqtt.properties import Properties


def connect(engine: BrokerEngine, client_id: str, version: int = 4, now: int = 0,
            **kw: object) -> ClientConn:
    conn = engine.open(now)
    engine.receive(conn, Connect(client_id, version, **kw), now)  # type: ignore[arg-type]
    return conn


def take(conn: ClientConn) -> list[Packet]:
    out = list(conn.outbox)
    conn.outbox.clear()
    return out


def subscribe(engine: BrokerEngine, conn: ClientConn, *subs: Subscription,
              props: Properties | None = None) -> list[Packet]:
    engine.receive(conn, Subscribe(1, subs, props or Properties()), 0)
    return take(conn)


def pubs(packets: list[Packet]) -> list[Publish]:
    return [p for p in packets if isinstance(p, Publish)]


def test_connack_first_MQTT_3_2_0_1_and_pingresp_3_12_4_1() -> None:
    e = BrokerEngine()
    c = connect(e, "a")
    assert take(c) == [ConnAck(False, 0)]
    e.receive(c, PingReq(), 1)
    assert take(c) == [PingResp()]


def test_a_local_protocol_error_is_raised_not_blamed_on_the_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A LocalProtocolError (the engine asked to send what it may not: its own bug) is a
    ProtocolError and so an MQTTError, but the engine raises it instead of closing the
    client's connection with 0x82 as it does for the client's errors."""
    e = BrokerEngine()
    c = connect(e, "a")
    take(c)

    def bug(*args: object) -> None:
        raise LocalProtocolError("all 65535 packet identifiers are in use")

    monkeypatch.setattr(e, "_subscribe", bug)
    with pytest.raises(LocalProtocolError):
        e.receive(c, Subscribe(1, (Subscription("t", 1),), Properties()), 1)
    assert not c.closed and not take(c)


def test_first_packet_not_connect_closes_MQTT_3_1_0_1() -> None:
    e = BrokerEngine()
    c = e.open(0)
    e.receive(c, PingReq(), 0)
    assert c.closed and not c.outbox


def test_second_connect_is_protocol_error_MQTT_3_1_0_2() -> None:
    e = BrokerEngine()
    c = connect(e, "a", version=5)
    take(c)
    e.receive(c, Connect("a", 5), 1)
    assert c.closed and take(c) == [Disconnect(0x82)]


def test_assigned_client_id_MQTT_3_1_3_6_and_reject_3_1_3_8() -> None:
    e = BrokerEngine()
    c5 = connect(e, "", version=5)
    (ack,) = take(c5)
    assert isinstance(ack, ConnAck) and ack.properties.assigned_client_identifier
    c4 = connect(e, "", version=4, clean_start=False)
    assert take(c4) == [ConnAck(False, 0x02)] and c4.closed


def test_delivery_qos_is_minimum_MQTT_3_8_4_8() -> None:
    e = BrokerEngine()
    sub = connect(e, "s")
    take(sub)
    assert subscribe(e, sub, Subscription("t", 1)) == [SubAck(1, (1,))]
    pub = connect(e, "p")
    take(pub)
    e.receive(pub, Publish("t", b"x", 2, packet_id=7), 1)
    assert take(pub) == [PubRec(7)]
    (got,) = pubs(take(sub))
    assert got.qos == 1 and got.packet_id == 1


def test_qos2_dup_not_forwarded_twice_MQTT_4_3_3_10() -> None:
    e = BrokerEngine()
    sub = connect(e, "s")
    subscribe(e, sub, Subscription("t", 2))
    take(sub)
    pub = connect(e, "p")
    take(pub)
    p = Publish("t", b"x", 2, packet_id=3)
    e.receive(pub, p, 1)
    e.receive(pub, p._replace(dup=True), 2)
    assert take(pub) == [PubRec(3), PubRec(3)]
    assert len(pubs(take(sub))) == 1
    e.receive(pub, PubRel(3), 3)
    assert take(pub) == [PubComp(3)]


def test_retained_set_replace_clear_MQTT_3_3_1_5_to_3_3_1_9() -> None:
    e = BrokerEngine()
    pub = connect(e, "p")
    e.receive(pub, Publish("r", b"one", 0, retain=True), 1)
    e.receive(pub, Publish("r", b"two", 0, retain=True), 2)          # replaces [MQTT-3.3.1-5]
    sub = connect(e, "s")
    take(sub)
    (got,) = pubs(subscribe(e, sub, Subscription("r", 1)))
    assert got.payload == b"two" and got.retain                       # [MQTT-3.3.1-9]
    e.receive(pub, Publish("r", b"", 0, retain=True), 3)              # clears [MQTT-3.3.1-6]
    assert "r" not in e.retained


def test_live_forward_clears_retain_unless_rap_MQTT_3_3_1_12_13() -> None:
    e = BrokerEngine()
    a = connect(e, "a", version=5)
    b = connect(e, "b", version=5)
    subscribe(e, a, Subscription("t", 0))
    subscribe(e, b, Subscription("t", 0, retain_as_published=True))
    take(a), take(b)
    p = connect(e, "p", version=5)
    e.receive(p, Publish("t", b"x", 0, retain=True), 1)
    assert not pubs(take(a))[0].retain and pubs(take(b))[0].retain


def test_retain_handling_1_and_2_MQTT_3_3_1_10_and_3_3_1_11() -> None:
    e = BrokerEngine()
    p = connect(e, "p", version=5)
    e.receive(p, Publish("r", b"x", 0, retain=True), 1)
    s = connect(e, "s", version=5)
    take(s)
    assert len(pubs(subscribe(e, s, Subscription("r", 0, retain_handling=1)))) == 1
    assert pubs(subscribe(e, s, Subscription("r", 0, retain_handling=1))) == []  # existed
    assert pubs(subscribe(e, s, Subscription("r", 0, retain_handling=2))) == []


def test_no_local_MQTT_3_8_3_3() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5)
    subscribe(e, c, Subscription("t", 0, no_local=True))
    take(c)
    e.receive(c, Publish("t", b"x"), 1)
    assert pubs(take(c)) == []


def test_subscription_identifiers_MQTT_3_3_4_3() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5)
    subscribe(e, c, Subscription("a/#", 0), props=Properties.of(subscription_identifier=7))
    take(c)
    p = connect(e, "p", version=5)
    e.receive(p, Publish("a/b", b"x"), 1)
    assert pubs(take(c))[0].properties.subscription_identifiers == [7]


def test_dollar_topics_not_matched_by_leading_wildcard_MQTT_4_7_2_1() -> None:
    e = BrokerEngine()
    c = connect(e, "c")
    subscribe(e, c, Subscription("#", 0), Subscription("+/x", 0))
    take(c)
    p = connect(e, "p")
    e.receive(p, Publish("$SYS/x", b"1"), 1)
    e.receive(p, Publish("a/x", b"2"), 1)
    assert [m.topic for m in pubs(take(c))] == ["a/x"]             # one copy, overlapping subs


def test_shared_subscription_one_member_each_MQTT_4_8_2_3() -> None:
    e = BrokerEngine()
    a = connect(e, "a", version=5)
    b = connect(e, "b", version=5)
    subscribe(e, a, Subscription("$share/g/t", 1))
    subscribe(e, b, Subscription("$share/g/t", 1))
    take(a), take(b)
    p = connect(e, "p", version=5)
    for i in range(10):
        e.receive(p, Publish("t", bytes([i])), 1)
    got_a, got_b = pubs(take(a)), pubs(take(b))
    assert len(got_a) + len(got_b) == 10 and got_a and got_b


def test_will_on_abnormal_close_MQTT_3_1_2_8_not_after_disconnect_3_1_2_10() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("will/#", 0))
    take(s)
    a = connect(e, "a", will=Will("will/a", b"gone"))
    e.connection_lost(a, 1)
    b = connect(e, "b", will=Will("will/b", b"gone"))
    e.receive(b, Disconnect(), 2)
    e.connection_lost(b, 2)
    assert [m.topic for m in pubs(take(s))] == ["will/a"]


def test_will_delay_and_cancel_on_reconnect() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("w", 0))
    take(s)
    will = Will("w", b"x", properties=Properties.of(will_delay_interval=5))
    props = Properties.of(session_expiry_interval=100)
    a = connect(e, "a", version=5, will=will, properties=props)
    e.connection_lost(a, 0)
    e.tick(4 * NS)
    assert pubs(take(s)) == []
    e.tick(6 * NS)
    assert len(pubs(take(s))) == 1
    a2 = connect(e, "a", version=5, will=will, properties=props, clean_start=False)
    e.connection_lost(a2, 10 * NS)
    connect(e, "a", version=5, now=11 * NS, clean_start=False, properties=props)
    e.tick(20 * NS)
    assert pubs(take(s)) == []                                       # cancelled


def test_keep_alive_one_and_a_half_MQTT_3_1_2_22() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5, keep_alive=10)
    take(c)
    e.tick(14 * NS)
    assert not c.closed
    e.tick(16 * NS)
    assert c.closed and take(c) == [Disconnect(0x8D)]


def test_server_keep_alive_MQTT_3_2_2_21() -> None:
    e = BrokerEngine(BrokerConfig(max_keepalive=30))
    c = connect(e, "c", version=5, keep_alive=600)
    (ack,) = take(c)
    assert isinstance(ack, ConnAck) and ack.properties.server_keep_alive == 30
    assert c.keep_alive == 30


def test_takeover_MQTT_3_1_4_3() -> None:
    e = BrokerEngine()
    old = connect(e, "same", version=5)
    take(old)
    new = connect(e, "same", version=5)
    assert old.closed and take(old) == [Disconnect(0x8E)]
    (ack,) = take(new)
    assert isinstance(ack, ConnAck) and ack.reason_code == 0 and not ack.session_present


def test_persistent_session_queue_and_resend_MQTT_4_4_0_1() -> None:
    e = BrokerEngine()
    s = connect(e, "s", clean_start=False)
    subscribe(e, s, Subscription("t", 2))
    take(s)
    p = connect(e, "p")
    e.receive(p, Publish("t", b"1", 1, packet_id=1), 1)        # in flight to s, never acked
    first = pubs(take(s))
    e.connection_lost(s, 2)
    e.receive(p, Publish("t", b"2", 2, packet_id=2), 3)        # queued while offline
    e.receive(p, Publish("t", b"3", 0), 3)                     # QoS 0: dropped when offline
    s2 = connect(e, "s", clean_start=False, now=4)
    out = take(s2)
    assert out[0] == ConnAck(True, 0)                           # [MQTT-3.2.2-2]
    again = pubs(out[1:])
    assert again[0].dup and again[0].packet_id == first[0].packet_id    # [MQTT-3.3.1-1]
    assert [m.payload for m in again] == [b"1", b"2"] and not again[1].dup


def test_clean_start_discards_session_MQTT_3_1_2_4() -> None:
    e = BrokerEngine()
    s = connect(e, "s", clean_start=False)
    subscribe(e, s, Subscription("t", 1))
    e.connection_lost(s, 1)
    s2 = connect(e, "s", clean_start=True)
    assert take(s2) == [ConnAck(False, 0)] and "t" not in e.sessions["s"].subs


def test_session_expiry_v5_MQTT_3_1_2_23() -> None:
    e = BrokerEngine()
    s = connect(e, "s", version=5, properties=Properties.of(session_expiry_interval=10))
    e.connection_lost(s, 0)
    e.tick(9 * NS)
    assert "s" in e.sessions
    e.tick(11 * NS)
    assert "s" not in e.sessions


def test_session_expired_before_a_tick_is_not_resumed_MQTT_3_1_2_23() -> None:
    """A reconnection after the interval finds no session, even if no tick ran meanwhile (a
    busy broker's timer runs late); one within the interval finds it."""
    e = BrokerEngine()
    props = Properties.of(session_expiry_interval=2)
    s = connect(e, "s", version=5, clean_start=False, properties=props)
    subscribe(e, s, Subscription("t", 1))
    e.connection_lost(s, 0)
    again = connect(e, "s", version=5, now=1 * NS, clean_start=False, properties=props)
    assert take(again)[0].session_present                         # [MQTT-3.2.2-2]
    e.connection_lost(again, 1 * NS)
    late = connect(e, "s", version=5, now=3 * NS, clean_start=False, properties=props)
    assert not take(late)[0].session_present and e.sessions["s"].subs == {}


def test_disconnect_cannot_set_expiry_from_zero_MQTT_3_14_2_2() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5)
    take(c)
    e.receive(c, Disconnect(0, Properties.of(session_expiry_interval=5)), 1)
    assert c.closed and take(c) == [Disconnect(0x82)]


def test_message_expiry_while_queued_MQTT_3_3_2_5() -> None:
    e = BrokerEngine()
    s = connect(e, "s", version=5, clean_start=False,
                properties=Properties.of(session_expiry_interval=100))
    subscribe(e, s, Subscription("t", 1))
    e.connection_lost(s, 0)
    p = connect(e, "p", version=5)
    e.receive(p, Publish("t", b"x", 1, packet_id=1,
                         properties=Properties.of(message_expiry_interval=2)), 0)
    s2 = connect(e, "s", version=5, clean_start=False, now=3 * NS)
    assert pubs(take(s2)) == []


def test_topic_alias_above_maximum_MQTT_3_3_2_9() -> None:
    e = BrokerEngine(BrokerConfig(topic_alias_maximum=2))
    c = connect(e, "c", version=5)
    take(c)
    e.receive(c, Publish("t", b"", properties=Properties.of(topic_alias=3)), 1)
    assert c.closed and take(c) == [Disconnect(0x94)]


def test_receive_maximum_exceeded_closes_0x93() -> None:
    e = BrokerEngine(BrokerConfig(receive_maximum=2))
    c = connect(e, "c", version=5)
    take(c)
    for pid in (1, 2, 3):
        e.receive(c, Publish("t", b"", 2, packet_id=pid), 1)
    assert c.closed and take(c)[-1] == Disconnect(0x93)


def test_outbound_window_MQTT_4_9_0_2() -> None:
    e = BrokerEngine()
    s = connect(e, "s", version=5, properties=Properties.of(receive_maximum=2))
    subscribe(e, s, Subscription("t", 1))
    take(s)
    p = connect(e, "p")
    for i in range(5):
        e.receive(p, Publish("t", bytes([i]), 1, packet_id=i + 1), 1)
    assert len(pubs(take(s))) == 2
    e.receive(s, PubAck(1), 2)
    assert [m.payload for m in pubs(take(s))] == [b"\x02"]


def test_backpressure_blocks_publisher_not_drops() -> None:
    e = BrokerEngine(BrokerConfig(max_inflight=1, max_queued_messages=3))
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 1))
    take(s)
    p = connect(e, "p")
    e.receive(p, Publish("t", b"\xff", 1, packet_id=99), 1)
    e.receive(s, PubAck(1), 1)                       # it reads: it may pause publishers
    for i in range(10):
        e.receive(p, Publish("t", bytes([i]), 1, packet_id=i + 1), 1)
    sess = e.sessions["s"]
    assert p.blocked_on == {sess} and sess.blockers == {p}
    assert len(sess.state.queue) == 9 and sess.state.dropped == 0
    assert e.take_unblocked() == []
    for pid in range(2, 9):                          # queue drains to 2, still over half of 3
        e.receive(s, PubAck(pid), 2)
    assert p.blocked_on and e.take_unblocked() == []
    e.receive(s, PubAck(9), 2)                       # 1 left: at most half of the limit
    assert not p.blocked_on and e.take_unblocked() == [p]


def test_qos0_to_congested_connection_dropped_and_counted() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 0))
    take(s)
    s.congested = True
    p = connect(e, "p")
    e.receive(p, Publish("t", b"x"), 1)
    assert pubs(take(s)) == [] and s.dropped_qos0 == 1


def test_unsubscribe_v5_reason_codes() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5)
    subscribe(e, c, Subscription("a", 0))
    e.receive(c, Unsubscribe(2, ("a", "b")), 1)
    assert take(c) == [UnsubAck(2, (0x00, 0x11))]


def test_acl_denied_subscribe_and_publish() -> None:
    acl = AccessControl.parse("topic read open/#\ntopic write in/#\n")
    e = BrokerEngine(auth=Authenticator(True, None, acl))
    c4 = connect(e, "c4")
    c5 = connect(e, "c5", version=5)
    assert subscribe(e, c4, Subscription("open/x", 0), Subscription("secret", 0))[-1] == \
        SubAck(1, (0, 0x80))
    assert subscribe(e, c5, Subscription("secret", 1))[-1] == SubAck(1, (0x87,))
    take(c4)
    e.receive(c5, Publish("open/x", b"no", 1, packet_id=1), 1)       # no write access
    assert take(c5) == [PubAck(1, 0x87)] and pubs(take(c4)) == []

"""More of the pure engine: version details, wills, takeover, subscriptions, limits, the slow
subscriber rule, shutdown, and the session journal the SQLite store is fed from.

Each test cites the normative statement it checks where one decides the behaviour.
"""

from __future__ import annotations

from qosinspect.broker.auth import AccessControl, Authenticator
from qosinspect.broker.engine import NS, BrokerConfig, BrokerEngine
from qosinspect.mqtt.packets import (
    ConnAck,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)
from qosinspect.mqtt.properties import Properties
from qosinspect.mqtt.session import QueuedMessage, Session

from .test_engine import connect, pubs, subscribe, take

EXPIRY = Properties.of(session_expiry_interval=100)


def test_mqtt31_has_no_session_present_flag_but_resumes() -> None:
    e = BrokerEngine()
    s = connect(e, "old31", version=3, clean_start=False)
    subscribe(e, s, Subscription("t", 1))
    e.connection_lost(s, 1)
    p = connect(e, "p")
    e.receive(p, Publish("t", b"x", 1, packet_id=1), 2)
    again = connect(e, "old31", version=3, clean_start=False, now=3)
    out = take(again)
    assert out[0] == ConnAck(False, 0)             # 3.1: the byte is reserved
    assert [m.payload for m in pubs(out)] == [b"x"]


def test_mqtt31_client_id_of_more_than_23_characters_refused() -> None:
    e = BrokerEngine()
    c = connect(e, "x" * 24, version=3)
    assert take(c) == [ConnAck(False, 0x02)] and c.closed


def test_refusal_never_has_session_present_MQTT_3_2_2_6() -> None:
    e = BrokerEngine(auth=Authenticator(allow_anonymous=False))
    c = connect(e, "s", clean_start=False)
    assert take(c) == [ConnAck(False, 5)]
    c5 = connect(e, "s5", version=5)
    assert take(c5) == [ConnAck(False, 0x87)] and e.stats.connections_refused == 2


def test_enhanced_authentication_not_offered_0x8C() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5, properties=Properties.of(authentication_method="SCRAM"))
    assert take(c) == [ConnAck(False, 0x8C)]


def test_client_publish_with_subscription_identifier_MQTT_3_3_4_6() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5)
    take(c)
    e.receive(c, Publish("t", b"", properties=Properties.of(subscription_identifier=1)), 1)
    assert take(c) == [Disconnect(0x82)] and c.closed


def test_will_retain_and_qos_MQTT_3_1_2_17() -> None:
    e = BrokerEngine()
    a = connect(e, "a", will=Will("w/a", b"gone", 1, retain=True))
    e.connection_lost(a, 1)
    msg = e.retained["w/a"]
    assert msg.payload == b"gone" and msg.qos == 1


def test_will_the_acl_forbids_is_never_published() -> None:
    acl = AccessControl.parse("topic read w/#\n")
    e = BrokerEngine(auth=Authenticator(True, None, acl))
    s = connect(e, "s")
    subscribe(e, s, Subscription("w/#", 0))
    take(s)
    a = connect(e, "a", will=Will("w/a", b"gone"))
    e.connection_lost(a, 1)
    assert pubs(take(s)) == []


def test_takeover_publishes_old_will_but_cancels_a_delayed_one_MQTT_3_1_3_9() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("w/#", 0))
    take(s)
    connect(e, "twin", will=Will("w/now", b"1"))
    connect(e, "twin")                                       # takeover: will without delay
    assert [m.topic for m in pubs(take(s))] == ["w/now"]
    delayed = Will("w/later", b"2", properties=Properties.of(will_delay_interval=5))
    connect(e, "twin5", version=5, will=delayed, properties=EXPIRY)
    connect(e, "twin5", version=5, clean_start=False, properties=EXPIRY, now=1 * NS)
    e.tick(10 * NS)
    assert pubs(take(s)) == []                               # the new connection came in time


def test_session_end_publishes_a_pending_delayed_will() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("w", 0))
    take(s)
    will = Will("w", b"x", properties=Properties.of(will_delay_interval=60))
    a = connect(e, "a", version=5, will=will, properties=Properties.of(session_expiry_interval=2))
    e.connection_lost(a, 0)
    e.tick(3 * NS)                                           # session over before the delay
    assert len(pubs(take(s))) == 1


def test_resubscribe_replaces_options_MQTT_3_8_4_3() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 0))
    assert subscribe(e, s, Subscription("t", 2)) == [SubAck(1, (2,))]
    p = connect(e, "p")
    e.receive(p, Publish("t", b"x", 2, packet_id=1), 1)
    got = pubs(take(s))
    assert len(got) == 1 and got[0].qos == 2


def test_unsubscribe_stops_delivery_MQTT_3_10_4_1() -> None:
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 1))
    e.receive(s, Unsubscribe(2, ("t",)), 1)
    take(s)
    p = connect(e, "p")
    e.receive(p, Publish("t", b"x", 1, packet_id=1), 2)
    assert pubs(take(s)) == []
    assert e.index.root.empty()                              # nothing left in the trie


def test_retained_message_expires() -> None:
    e = BrokerEngine()
    p = connect(e, "p", version=5)
    e.receive(p, Publish("r", b"x", 0, retain=True,
                         properties=Properties.of(message_expiry_interval=5)), 0)
    s = connect(e, "s", version=5, now=2 * NS)
    take(s)
    e.receive(s, Subscribe(1, (Subscription("r", 0),)), 2 * NS)
    first = pubs(take(s))
    assert first[0].properties.message_expiry_interval == 3     # remaining time
    late = connect(e, "late", version=5, now=6 * NS)
    e.receive(late, Subscribe(1, (Subscription("#", 0),)), 6 * NS)
    assert pubs(take(late)) == [] and "r" not in e.retained


def test_limits_on_subscriptions_and_retained_topics() -> None:
    e = BrokerEngine(BrokerConfig(max_subscriptions=2, max_retained=1))
    c5 = connect(e, "c5", version=5)
    take(c5)
    ack = subscribe(e, c5, Subscription("a", 0), Subscription("b", 0), Subscription("c", 0))
    assert ack == [SubAck(1, (0, 0, 0x97))]                  # Quota exceeded
    c4 = connect(e, "c4")
    take(c4)
    assert subscribe(e, c4, Subscription("a", 0), Subscription("b", 0),
                     Subscription("c", 0)) == [SubAck(1, (0, 0, 0x80))]
    e.receive(c4, Publish("r1", b"x", retain=True), 1)
    e.receive(c4, Publish("r2", b"x", retain=True), 1)
    e.receive(c4, Publish("r1", b"y", retain=True), 1)       # replacing is always allowed
    assert set(e.retained) == {"r1"} and e.stats.retained_refused == 1


def test_shared_subscription_online_first_queued_for_offline_MQTT_4_8_2_4() -> None:
    e = BrokerEngine()
    a = connect(e, "a", version=5, clean_start=False, properties=EXPIRY)
    b = connect(e, "b", version=5, clean_start=False, properties=EXPIRY)
    subscribe(e, a, Subscription("$share/g/j", 1))
    subscribe(e, b, Subscription("$share/g/j", 1))
    e.connection_lost(b, 1)
    take(a)
    p = connect(e, "p", version=5)
    for i in range(4):
        e.receive(p, Publish("j", bytes([i]), 1, packet_id=i + 1), 2)
    assert len(pubs(take(a))) == 4                           # b is offline: a gets them all
    e.connection_lost(a, 3)
    e.receive(p, Publish("j", b"q", 1, packet_id=9), 4)      # nobody online: queued for one
    queued = sum(len(e.sessions[n].state.queue) for n in ("a", "b"))
    assert queued == 1


def test_disconnect_may_shorten_session_expiry_to_zero() -> None:
    e = BrokerEngine()
    c = connect(e, "c", version=5, properties=EXPIRY)
    take(c)
    e.receive(c, Disconnect(0, Properties.of(session_expiry_interval=0)), 1)
    assert "c" not in e.sessions


def test_connect_timeout_closes_silent_connections() -> None:
    e = BrokerEngine(BrokerConfig(connect_timeout=2))
    c = e.open(0)
    e.tick(1 * NS)
    assert not c.closed
    e.tick(3 * NS)
    assert c.closed and not c.outbox


def test_offline_queue_is_capped_oldest_dropped_and_counted() -> None:
    e = BrokerEngine(BrokerConfig(max_offline_messages=3))
    s = connect(e, "s", clean_start=False)
    subscribe(e, s, Subscription("t", 1))
    e.connection_lost(s, 0)
    p = connect(e, "p")
    for i in range(5):
        e.receive(p, Publish("t", bytes([i]), 1, packet_id=i + 1), 1)
    e.receive(p, Publish("t", b"q0"), 1)                     # QoS 0 to an offline session
    state = e.sessions["s"].state
    assert [q.publish.payload for q in state.queue] == [b"\x02", b"\x03", b"\x04"]
    assert state.dropped == 2 and e.stats.dropped_qos0 == 1
    assert not p.blocked_on                                  # offline: never blocks


def test_slow_subscriber_is_disconnected_after_the_timeout() -> None:
    e = BrokerEngine(BrokerConfig(max_inflight=1, max_queued_messages=2,
                                  slow_subscriber_timeout=5))
    s = connect(e, "s", version=5)
    subscribe(e, s, Subscription("t", 1))
    take(s)
    p = connect(e, "p")
    e.receive(p, Publish("t", b"first", 1, packet_id=9), 0)
    e.receive(s, PubAck(1), 0)                               # it reads: it may pause them
    for i in range(4):
        e.receive(p, Publish("t", bytes([i]), 1, packet_id=i + 1), 0)
    assert p.blocked_on
    e.receive(s, PubAck(2), 4 * NS)                          # progress restarts the clock
    e.tick(8 * NS)
    assert not s.closed
    e.tick(10 * NS)
    assert s.closed and take(s)[-1] == Disconnect(0x97)
    assert not p.blocked_on and e.take_unblocked() == [p]
    assert e.stats.slow_subscribers_closed == 1


def test_shutdown_tells_mqtt5_clients_0x8B_and_keeps_sessions() -> None:
    e = BrokerEngine()
    c5 = connect(e, "c5", version=5, properties=EXPIRY, will=Will("w", b"x"))
    c4 = connect(e, "c4", clean_start=False)
    s = connect(e, "s")
    subscribe(e, s, Subscription("w", 0))
    take(c5), take(c4), take(s)
    e.shutdown(1)
    assert take(c5) == [Disconnect(0x8B)] and take(c4) == []
    assert {"c5", "c4"} <= set(e.sessions)                   # persistent sessions stay
    assert pubs(take(s)) == []                               # no wills at shutdown


def test_packet_ids_continue_across_connections() -> None:
    e = BrokerEngine()
    s = connect(e, "s", clean_start=False)
    subscribe(e, s, Subscription("t", 1))
    p = connect(e, "p")
    e.receive(p, Publish("t", b"a", 1, packet_id=1), 1)
    first = pubs(take(s))[0]
    e.receive(s, PubAck(first.packet_id or 0), 2)
    e.connection_lost(s, 3)
    s2 = connect(e, "s", clean_start=False, now=4)
    take(s2)
    e.receive(p, Publish("t", b"b", 1, packet_id=2), 5)
    assert pubs(take(s2))[0].packet_id == (first.packet_id or 0) + 1


def test_session_journal_records_every_stored_change() -> None:
    """The journal the store is fed from: queued, sent, pubrec, done, in2/rel2, dropped."""
    s = Session(receive_maximum=1, max_queued=10, hard_limit=1)
    s.journal = []
    s.connection_made(0, session_present=False)
    out = s.publish(Publish("t", b"1", 2), 1, tag=1)
    s.publish(Publish("t", b"2", 1), 1, tag=2)               # waits: window of 1
    s.publish(Publish("t", b"3", 1), 1, tag=3)               # hard limit 1: drops tag 2
    pid = out[0].packet_id  # type: ignore[union-attr]
    s.receive(PubRec(pid), 2)
    s.receive(Publish("in", b"", 2, packet_id=7), 3)
    s.receive(PubRel(7), 4)
    kinds = [j[0] for j in s.journal]
    assert kinds == ["queued", "sent", "queued", "dropped", "queued", "pubrec", "in2", "rel2"]
    assert s.journal[3] == ("dropped", 2)
    s.journal.clear()
    s.receive(PubComp(pid), 5)
    assert s.journal[0] == ("done", 1) and s.journal[1][0] == "sent" and s.journal[1][1] == 3


def test_queued_bytes_follow_the_queue_on_every_path() -> None:
    """The byte bound's count (topic + payload of what waits) after each way in and out: sent at
    once (never queued), queued behind a full window, drained by an acknowledgement, expired,
    dropped over the hard limit, dropped oldest, put back from a store."""
    s = Session(receive_maximum=1, max_queued=10, hard_limit=3, version=5)
    s.connection_made(0, session_present=False)

    def waiting() -> int:
        return sum(len(m.publish.topic) + len(m.publish.payload) for m in s.queue)

    (first,) = s.publish(Publish("t", b"12345", 1), 1)      # window free: straight out
    assert isinstance(first, Publish)
    assert not s.queue and s.queued_bytes == 0
    for i, payload in enumerate((b"a" * 10, b"b" * 20, b"c" * 30)):
        expires = 5 if i == 0 else None
        assert s.publish(Publish(f"t/{i}", payload, 1), 1, expires_ns=expires) == []
        assert s.queued_bytes == waiting()
    assert s.queued_bytes == 3 + 10 + 3 + 20 + 3 + 30
    s.publish(Publish("t/3", b"d" * 40, 1), 1)               # hard limit 3: the oldest goes
    assert s.dropped == 1 and s.queued_bytes == waiting() == 3 + 20 + 3 + 30 + 3 + 40
    assert s.drop_oldest() is not None and s.queued_bytes == waiting() == 3 + 30 + 3 + 40
    (second,) = s.receive(PubAck(first.packet_id or 0), 2).send   # acked: the next goes
    assert isinstance(second, Publish) and second.topic == "t/2"
    assert s.queued_bytes == waiting() == 3 + 40
    s.queue.clear()
    s.queued_bytes = 0
    s.enqueue(QueuedMessage(Publish("t/9", b"e" * 7, 1)))    # back from a store
    assert s.queued_bytes == waiting() == 3 + 7
    s.queue.clear()
    s.queued_bytes = 0
    s.publish(Publish("t/late", b"x", 1), 10, expires_ns=11)
    assert s.queued_bytes == 7
    assert s.receive(PubAck(second.packet_id or 0), 20).send == []   # it expired meanwhile
    assert s.expired == 1 and s.queued_bytes == 0 and not s.queue


def test_keep_alive_is_not_enforced_on_a_client_we_do_not_read() -> None:
    """A publisher paused by backpressure cannot be seen pinging: it is not timed out."""
    e = BrokerEngine(BrokerConfig(max_inflight=1, max_queued_messages=1,
                                  slow_subscriber_timeout=60))
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 1))
    p = connect(e, "p", keep_alive=2)
    e.receive(p, Publish("t", b"first", 1, packet_id=9), 0)
    e.receive(s, PubAck(1), 0)                               # it reads: it may pause them
    for i in range(3):
        e.receive(p, Publish("t", bytes([i]), 1, packet_id=i + 1), 0)
    assert p.blocked_on
    e.tick(10 * NS)
    assert not p.closed
    e.receive(s, PubAck(2), 11 * NS)
    e.receive(s, PubAck(3), 11 * NS)
    assert not p.blocked_on
    e.tick(12 * NS)
    assert not p.closed                                      # the clock restarted at 10 s
    e.tick(14 * NS)
    assert p.closed                                          # 1.5 x 2 s of silence

"""End-to-end matching through the broker: delivered, duplicates, losses, downgrades."""

from __future__ import annotations

import qosinspect
from qosinspect.testing.events import EventBuilder


def _rows(b: EventBuilder) -> list[tuple[str, str, str, object]]:
    d = qosinspect.analyze(b.events).deliveries
    return [(r.subscriber, r.topic, r.status, None if r.reason != r.reason else r.reason)
            for r in d.itertuples()]


def test_qos0_loss_to_a_connected_subscriber() -> None:
    b = EventBuilder()
    s1 = b.client("s1")
    b.subscribe(s1, 1, ("a/+", 0))
    s2 = b.client("s2")
    b.subscribe(s2, 1, ("a/b", 0))
    p = b.client("p")
    b.publish(p, "c2b", "a/b", b"m")
    b.publish(s1, "b2c", "a/b", b"m", dt_ms=1)
    # s2 never gets it, though connected: a QoS 0 loss
    assert _rows(b) == [("s1", "a/b", "delivered", None),
                        ("s2", "a/b", "not_delivered", "subscriber_connected")]
    assert qosinspect.analyze(b.events).summary().loc[0, "not_delivered"] == 1


def test_offline_subscriber_is_told_apart() -> None:
    b = EventBuilder()
    s = b.client("s", clean_start=False)
    b.subscribe(s, 1, ("x", 0))
    b.disconnect(s)
    b.close(s, "fin")
    p = b.client("p")
    b.publish(p, "c2b", "x", b"m")
    assert _rows(b) == [("s", "x", "not_delivered", "subscriber_offline")]


def test_qos_downgrade_by_granted_qos() -> None:
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 2), granted=(0,))
    p = b.client("p")
    b.qos2(p, "c2b", "t", b"m", 1)
    b.publish(s, "b2c", "t", b"m")
    d = qosinspect.analyze(b.events).deliveries
    (row,) = d.itertuples()
    assert (row.pub_qos, row.sub_qos, row.granted_qos, row.downgraded) == (2, 0, 0, True)


def test_qos1_redelivery_is_a_duplicate_delivered() -> None:
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 1))
    p = b.client("p")
    b.qos1(p, "c2b", "t", b"m", 1)
    b.publish(s, "b2c", "t", b"m", qos=1, packet_id=7)
    b.publish(s, "b2c", "t", b"m", qos=1, packet_id=7, dup=True)
    b.puback(s, "c2b", 7)
    assert [r[2] for r in _rows(b)] == ["delivered", "duplicate"]


def test_qos2_resend_before_pubrec_is_not_delivered_twice() -> None:
    """[MQTT-4.3.3-10]: the QoS 2 receiver does not deliver a re-sent PUBLISH again."""
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 2))
    p = b.client("p")
    b.qos2(p, "c2b", "t", b"m", 1)
    b.publish(s, "b2c", "t", b"m", qos=2, packet_id=3)
    b.publish(s, "b2c", "t", b"m", qos=2, packet_id=3, dup=True)
    b.pubrec(s, "c2b", 3)
    b.pubrel(s, "b2c", 3)
    b.pubcomp(s, "c2b", 3)
    assert [r[2] for r in _rows(b)] == ["delivered"]


def test_publisher_resend_reaching_the_subscriber_twice() -> None:
    """A QoS 1 publisher re-sends; the broker forwards both: the subscriber has a duplicate."""
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 1))
    p = b.client("p")
    b.publish(p, "c2b", "t", b"m", qos=1, packet_id=1)
    b.publish(p, "c2b", "t", b"m", qos=1, packet_id=1, dup=True)
    b.puback(p, "b2c", 1)
    b.qos1(s, "b2c", "t", b"m", 10)
    b.qos1(s, "b2c", "t", b"m", 11)
    assert [r[2] for r in _rows(b)] == ["delivered", "duplicate"]


def test_no_local_and_shared_subscriptions_set_no_expectation() -> None:
    b = EventBuilder()
    me = b.client("me", version=5)
    b.subscribe(me, 1, ("t", 0), no_local=True)
    b.subscribe(me, 2, ("$share/g/t", 0))
    b.publish(me, "c2b", "t", b"mine")
    assert _rows(b) == []


def test_unsubscribe_ends_the_expectation() -> None:
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 0))
    b.unsubscribe(s, 2, "t")
    p = b.client("p")
    b.publish(p, "c2b", "t", b"m")
    assert _rows(b) == []


def test_subscriber_leaving_right_after_is_not_a_loss() -> None:
    """paho-v311-v5.pcap ends so: a retained QoS 0 clear 118 us before the subscriber's
    DISCONNECT; the broker had no time to forward it."""
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 0))
    p = b.client("p")
    b.publish(p, "c2b", "t", b"", retain=True)
    b.disconnect(s, dt_ms=0.118)
    b.close(s, "fin", dt_ms=0.1)
    b.advance(5)
    b.ping(p)
    assert _rows(b) == [("s", "t", "not_delivered", "subscriber_left")]
    summary = qosinspect.analyze(b.events).summary()
    assert summary.loc[0, "not_delivered"] == 0 and summary.loc[0, "not_delivered_offline"] == 1


def test_presence_follows_each_connection_after_a_takeover() -> None:
    b = EventBuilder()
    s1 = b.client("s", clean_start=False)
    b.subscribe(s1, 1, ("t", 0))
    s2 = b.client("s", clean_start=False, session_present=True)  # takes the session over
    b.close(s1, "fin")                                             # the old one goes
    b.advance(3)
    p = b.client("p")
    b.publish(p, "c2b", "t", b"x")
    b.advance(5)
    b.ping(s2)
    assert _rows(b) == [("s", "t", "not_delivered", "subscriber_connected")]


def test_subscriptions_followed_per_session_are_bounded() -> None:
    from qosinspect.analysis.deliveries import MAX_FILTERS_PER_SESSION, DeliveryMatcher

    m = DeliveryMatcher(lambda code, ts: 1)
    for i in range(MAX_FILTERS_PER_SESSION + 5):
        m.subscribe(0, 0, f"t/{i}", 1, False)
    m.subscribe(0, 0, "t/0", 2, False)  # an update of a followed filter still counts
    assert len(m._subs[0]) == MAX_FILTERS_PER_SESSION and m.untracked_filters == 5
    assert m._subs[0]["t/0"] == (2, False)


def _store_rows(m: object) -> list[dict[str, int]]:
    store = m.store  # type: ignore[attr-defined]
    return [store.row(i) for i in range(store.rows)]


def test_three_or_more_subscribers_of_one_message() -> None:
    from qosinspect.analysis.deliveries import DeliveryMatcher

    m = DeliveryMatcher(lambda code, ts: 1)
    for sub in (1, 2, 3, 4):
        m.subscribe(sub, 0, "t", 1, False)
    m.publish(content=7, ts=10, ex_id=0, qos=1, publisher=0, broker=0, topic_code=0, topic="t")
    for sub in (1, 2, 3, 3, 4):  # subscriber 3 twice: a duplicate
        m.deliver(7, 20, 100 + sub, 1, sub, 0, False)
    m.finish()
    rows = _store_rows(m)
    assert [(r["subscriber"], r["status"]) for r in rows] == [(1, 0), (2, 0), (3, 0), (3, 1),
                                                              (4, 0)]


def test_same_content_published_twice_matches_in_order() -> None:
    from qosinspect.analysis.deliveries import DeliveryMatcher

    m = DeliveryMatcher(lambda code, ts: 1)
    m.subscribe(1, 0, "t", 0, False)
    m.publish(content=5, ts=10, ex_id=0, qos=0, publisher=0, broker=0, topic_code=0, topic="t")
    m.publish(content=5, ts=20, ex_id=1, qos=0, publisher=0, broker=0, topic_code=0, topic="t")
    m.deliver(5, 15, 10, 0, 1, 0, False)   # only the first was published by then
    m.deliver(5, 25, 11, 0, 1, 0, False)
    m.deliver(5, 26, 12, 0, 1, 0, False)   # a third copy: a duplicate of the second
    m.finish()
    rows = _store_rows(m)
    assert [(r["pub_ex_id"], r["sub_ex_id"], r["status"]) for r in rows] == [
        (0, 10, 0), (1, 11, 0), (1, 12, 1)]


def test_pending_ring_settles_the_oldest_when_full() -> None:
    from qosinspect.analysis.deliveries import DeliveryMatcher

    m = DeliveryMatcher(lambda code, ts: 2, max_pending=3)
    m.subscribe(1, 0, "t", 0, False)
    for i in range(5):  # the ring holds 3: the first two are settled as not delivered
        m.publish(content=100 + i, ts=i, ex_id=i, qos=0, publisher=0, broker=0, topic_code=0,
                  topic="t")
    assert m.pending == 3
    m.deliver(100, 9, 50, 0, 1, 0, False)  # too late: publication 0 is gone
    m.deliver(104, 9, 51, 0, 1, 0, False)
    assert m.unmatched == 1
    m.finish()
    rows = _store_rows(m)
    missing = [r["pub_ex_id"] for r in rows if r["status"] == 2]
    assert missing == [0, 1, 2, 3] and all(r["reason"] == 2 for r in rows if r["status"] == 2)
    assert [r["pub_ex_id"] for r in rows if r["status"] == 0] == [4]


def test_pending_publications_expire_after_the_window() -> None:
    from qosinspect.analysis.deliveries import DeliveryMatcher

    m = DeliveryMatcher(lambda code, ts: 1, window_ns=100)
    m.subscribe(1, 0, "t", 0, False)
    m.publish(content=1, ts=0, ex_id=0, qos=0, publisher=0, broker=0, topic_code=0, topic="t")
    m.publish(content=2, ts=150, ex_id=1, qos=0, publisher=0, broker=0, topic_code=0, topic="t")
    assert m.pending == 1  # the first one expired when the second came
    m.deliver(1, 160, 9, 0, 1, 0, False)
    assert m.unmatched == 1


def test_a_retained_copy_of_an_old_message_is_not_a_duplicate() -> None:
    b = EventBuilder()
    s = b.client("s")
    b.subscribe(s, 1, ("t", 0))
    p = b.client("p")
    b.publish(p, "c2b", "t", b"m", retain=True)
    b.publish(s, "b2c", "t", b"m")
    b.publish(s, "b2c", "t", b"m", retain=True)  # the retained copy sent on a new SUBSCRIBE
    assert [r[2] for r in _rows(b)] == ["delivered"]


def test_identical_messages_published_before_the_subscribe_are_not_its_copies() -> None:
    """A sensor repeating one reading (community capture ArsyaDin__dist_sys__MQTT.pcap): three
    identical messages before the subscriber's SUBSCRIBE, then one a second for three seconds,
    each forwarded within a millisecond. The copies are those published after the SUBSCRIBE
    (latency under 1 ms), not the oldest identical ones (3 s), and the last copy the subscriber
    did get is not counted as missing (before: 3 s latencies and 2 losses)."""
    b = EventBuilder()
    p = b.client("p")
    for _ in range(3):
        b.publish(p, "c2b", "t", b"28", dt_ms=1000)
    s = b.client("s")
    b.subscribe(s, 1, ("t", 0))
    for _ in range(3):
        b.publish(p, "c2b", "t", b"28", dt_ms=1000)
        b.publish(s, "b2c", "t", b"28", dt_ms=0.2)
    d = qosinspect.analyze(b.events).deliveries
    assert list(d["status"]) == ["delivered"] * 3
    assert d["latency_ms"].max() < 1

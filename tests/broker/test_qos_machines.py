"""Unit tests of the sans-I/O QoS tables (qosinspect.mqtt.qos) and session (mqtt.session).

Each test names the normative statement it checks.
"""

from __future__ import annotations

import pytest

from qosinspect.errors import LocalProtocolError, RemoteProtocolError
from qosinspect.mqtt.packets import PubAck, PubComp, Publish, PubRec, PubRel
from qosinspect.mqtt.qos import PacketIdAllocator, Receiver, Sender, SendState
from qosinspect.mqtt.session import Session


def pub(qos: int, topic: str = "t", payload: bytes = b"x") -> Publish:
    return Publish(topic, payload, qos)


# -- packet ids -------------------------------------------------------------------------------

def test_ids_nonzero_and_skip_in_use_MQTT_2_2_1_3_and_4_3_2_1() -> None:
    ids = PacketIdAllocator(first=65534)
    a, b, c = ids.allocate(), ids.allocate(), ids.allocate()
    assert (a, b, c) == (65534, 65535, 1)            # wraps, never 0
    ids.release(65535)
    ids2 = PacketIdAllocator(first=1)
    ids2.in_use = {1, 2, 3}
    assert ids2.allocate() == 4                       # skips ids in use


def test_ids_exhausted_is_local_error() -> None:
    ids = PacketIdAllocator()
    ids.in_use = set(range(1, 65536))
    with pytest.raises(LocalProtocolError):
        ids.allocate()


def test_directions_have_independent_ids() -> None:
    a, b = Session(), Session()
    a.connection_made(0, session_present=False)
    b.connection_made(0, session_present=False)
    p1 = a.publish(pub(1), 1)[0]
    p2 = b.publish(pub(1), 1)[0]
    assert isinstance(p1, Publish) and isinstance(p2, Publish)
    assert p1.packet_id == p2.packet_id == 1


# -- sender -----------------------------------------------------------------------------------

def test_qos1_sender_MQTT_4_3_2_2_and_4_3_2_3() -> None:
    s = Sender()
    out = s.send(pub(1)._replace(dup=True), now=10)
    assert out.dup is False and out.packet_id == 1           # [MQTT-4.3.2-2]
    assert s.in_flight[1].state is SendState.WAIT_PUBACK     # [MQTT-4.3.2-3]
    done = s.on_puback(PubAck(1), now=25)
    assert done is not None and done.ok and done.t_first_ns == 10 and done.t_done_ns == 25
    assert not s.in_flight and 1 not in s.ids.in_use


def test_qos2_sender_full_flow_MQTT_4_3_3_2_to_4_3_3_5() -> None:
    s = Sender()
    out = s.send(pub(2), now=1)
    assert out.packet_id == 1 and not out.dup                # [MQTT-4.3.3-2]
    rel, done = s.on_pubrec(PubRec(1), now=2)
    assert rel == PubRel(1) and done is None                 # [MQTT-4.3.3-4]
    assert s.in_flight[1].state is SendState.WAIT_PUBCOMP    # [MQTT-4.3.3-5]
    done2 = s.on_pubcomp(PubComp(1), now=3)
    assert done2 is not None and done2.ok and not s.in_flight


def test_refused_pubrec_ends_flow_MQTT_4_4_0_2() -> None:
    s = Sender(version=5)
    s.send(pub(2), now=1)
    rel, done = s.on_pubrec(PubRec(1, 0x87), now=2)
    assert rel is None and done is not None and not done.ok
    assert s.resend(3) == []                                 # never retransmitted


def test_pubrec_for_unknown_id_answers_pubrel_0x92() -> None:
    s = Sender(version=5)
    rel, done = s.on_pubrec(PubRec(7), now=1)
    assert rel == PubRel(7, 0x92) and done is None


def test_orphan_puback_ignored_and_counted() -> None:
    s = Sender()
    assert s.on_puback(PubAck(9), 0) is None
    assert s.orphan_acks == 1


def test_puback_for_qos2_flow_is_remote_protocol_error() -> None:
    s = Sender()
    s.send(pub(2), 0)
    with pytest.raises(RemoteProtocolError) as info:
        s.on_puback(PubAck(1), 1)
    assert info.value.reason_code == 0x82


def test_resend_on_reconnect_MQTT_4_4_0_1_and_3_3_1_1_and_4_3_3_6() -> None:
    s = Sender()
    s.send(pub(1, "a"), 1)
    s.send(pub(2, "b"), 2)
    s.send(pub(2, "c"), 3)
    s.on_pubrec(PubRec(2), 4)
    again = s.resend(now=10)
    assert [type(p).__name__ for p in again] == ["Publish", "PubRel", "Publish"]  # [MQTT-4.6.0-1]
    p1, rel, p3 = again
    assert isinstance(p1, Publish) and p1.dup and p1.packet_id == 1         # [MQTT-3.3.1-1]
    assert rel == PubRel(2)                                                 # [MQTT-4.3.3-6]
    assert isinstance(p3, Publish) and p3.dup and p3.packet_id == 3
    assert s.in_flight[1].sends == 2 and s.in_flight[1].t_first_ns == 1     # first time kept


def test_no_resend_without_reconnect_MQTT_4_4_0_1() -> None:
    sess = Session()
    sess.connection_made(0, session_present=False)
    sess.publish(pub(1), 1)
    out = sess.receive(PubRec(99), 2)           # unrelated traffic never triggers a resend
    assert all(not isinstance(p, Publish) for p in out.send)


def test_send_quota_MQTT_4_9_0_2_and_qos0_not_counted_4_9_0_3() -> None:
    sess = Session(receive_maximum=2)
    sess.connection_made(0, session_present=False)
    sent = [p for i in range(5) for p in sess.publish(pub(1, f"t{i}"), i)]
    assert len(sent) == 2 and len(sess.queue) == 3
    assert sess.publish(pub(0), 6) == [pub(0)]                  # QoS 0 still goes out
    out = sess.receive(PubAck(1), 7)
    assert [p.topic for p in out.send if isinstance(p, Publish)] == ["t2"]
    with pytest.raises(LocalProtocolError):
        sess.sender.send(pub(1), 8)


# -- receiver ---------------------------------------------------------------------------------

def test_qos1_receiver_MQTT_4_3_2_4_and_4_3_2_5() -> None:
    r = Receiver()
    p = Publish("t", b"", 1, packet_id=5)
    assert r.on_publish(p, 0) == (True, PubAck(5))
    assert r.on_publish(p._replace(dup=True), 1) == (True, PubAck(5))  # a new message each time


def test_qos2_receiver_method_b_MQTT_4_3_3_8_to_4_3_3_12() -> None:
    r = Receiver()
    p = Publish("t", b"", 2, packet_id=5)
    assert r.on_publish(p, 0) == (True, PubRec(5))                       # [MQTT-4.3.3-8]
    assert r.on_publish(p._replace(dup=True), 1) == (False, PubRec(5))   # [MQTT-4.3.3-10]
    assert r.on_pubrel(PubRel(5), 2) == PubComp(5)                       # [MQTT-4.3.3-11]
    assert r.on_publish(p, 3) == (True, PubRec(5))                       # [MQTT-4.3.3-12]


def test_pubrel_unknown_id_v5_gets_0x92() -> None:
    assert Receiver(version=5).on_pubrel(PubRel(3), 0) == PubComp(3, 0x92)
    assert Receiver(version=4).on_pubrel(PubRel(3), 0) == PubComp(3)


def test_receive_maximum_exceeded_MQTT_3_3_4_9() -> None:
    r = Receiver(receive_maximum=2)
    r.on_publish(Publish("t", b"", 2, packet_id=1), 0)
    r.on_publish(Publish("t", b"", 2, packet_id=2), 0)
    with pytest.raises(RemoteProtocolError) as info:
        r.on_publish(Publish("t", b"", 2, packet_id=3), 0)
    assert info.value.reason_code == 0x93


# -- session ----------------------------------------------------------------------------------

def test_session_offline_queue_and_resume_order() -> None:
    s = Session()
    s.connection_made(0, session_present=False)
    first = s.publish(pub(2, "a"), 1)
    assert isinstance(first[0], Publish) and first[0].packet_id == 1
    s.connection_lost()
    assert s.publish(pub(0, "q0"), 2) == [] and s.dropped_qos0 == 1
    assert s.publish(pub(1, "b"), 3) == []
    out = s.connection_made(4, session_present=True)
    assert isinstance(out[0], Publish) and out[0].dup and out[0].topic == "a"
    assert isinstance(out[1], Publish) and not out[1].dup and out[1].topic == "b"
    assert out[1].packet_id == 2                                   # ids continue


def test_clean_start_discards_state_MQTT_3_1_2_4() -> None:
    s = Session()
    s.connection_made(0, session_present=False)
    s.publish(pub(1), 1)
    s.connection_lost()
    assert s.connection_made(2, session_present=False) == []
    assert not s.sender.in_flight


def test_message_expiry_in_queue_and_remaining_interval() -> None:
    s = Session(version=5)
    s.publish(pub(1, "old"), 0, expires_ns=5_000_000_000)
    s.publish(pub(1, "new"), 0, expires_ns=20_000_000_000)
    out = s.connection_made(10_000_000_000, session_present=True)
    assert len(out) == 1 and s.expired == 1
    p = out[0]
    assert isinstance(p, Publish) and p.properties.message_expiry_interval == 10


def test_tag_round_trip() -> None:
    s = Session()
    s.connection_made(0, session_present=False)
    marker = object()
    s.publish(pub(2), 0, tag=marker)
    s.receive(PubRec(1), 1)
    out = s.receive(PubComp(1), 2)
    assert out.completed[0].tag is marker


def test_hard_limit_drops_oldest_counted() -> None:
    s = Session(max_queued=2, hard_limit=3)
    for i in range(5):
        s.publish(pub(1, f"t{i}"), i)
    assert s.over_limit and s.dropped == 2
    assert [m.publish.topic for m in s.queue] == ["t2", "t3", "t4"]


def test_in_memory_pair_exchanges_qos2_once() -> None:
    """Two sessions wired together in memory: duplicate PUBLISH after reconnect, one delivery."""
    a, b = Session(), Session()
    a.connection_made(0, session_present=False)
    b.connection_made(0, session_present=False)
    (p,) = a.publish(pub(2, "x"), 1)
    got = b.receive(p, 2)
    assert got.deliver and got.send == [PubRec(1)]
    # the PUBREC is lost; both sides reconnect keeping the session
    a.connection_lost()
    resent = a.connection_made(3, session_present=True)
    again = b.receive(resent[0], 4)
    assert not again.deliver and again.send == [PubRec(1)]       # [MQTT-4.3.3-10]
    rel = a.receive(again.send[0], 5).send
    comp = b.receive(rel[0], 6).send
    done = a.receive(comp[0], 7)
    assert done.completed and done.completed[0].sends == 2

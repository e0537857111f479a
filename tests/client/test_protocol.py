"""The sans-I/O client protocol: packets and ``now`` in, packets and events out, no sockets.

Each test that decides a normative behaviour cites its statement ([MQTT-x.y.z-n], MQTT 5.0
numbering unless said otherwise).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.client.errors import ConnectionLost, NotConnected
from qosinspect.client.protocol import ClientProtocol, ConnectOptions, ConnState
from qosinspect.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from qosinspect.mqtt.packets import (
    ConnAck,
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
from qosinspect.mqtt.qos import Receiver

NS = 1_000_000_000


def connected(version: int = 4, present: bool = False, **kw: object) -> ClientProtocol:
    kw.setdefault("client_id", "c")
    proto = ClientProtocol(ConnectOptions(version=version, **kw))  # type: ignore[arg-type]
    proto.connect(0)
    out = proto.receive(ConnAck(present, 0), 1)
    assert out.connected is not None and proto.state is ConnState.CONNECTED
    return proto


def reconnect(proto: ClientProtocol, present: bool, props: Properties | None = None,
              now: int = 100) -> tuple[list[Packet], list[object]]:
    proto.connection_lost()
    proto.connect(now)
    out = proto.receive(ConnAck(present, 0, props or Properties()), now + 1)
    assert out.connected is not None
    return out.send, out.connected.lost


# -- CONNECT and CONNACK ------------------------------------------------------------------------

def test_connect_carries_the_options_per_version() -> None:
    will = Will("w/t", b"gone", 1, True)
    proto = ClientProtocol(ConnectOptions("id", 5, clean_start=False, keep_alive=7,
                                          username="u", password=b"p", will=will,
                                          session_expiry=60, receive_maximum=10))
    connect = proto.connect(0)
    assert (connect.client_id, connect.protocol_version, connect.clean_start,
            connect.keep_alive, connect.username, connect.password, connect.will) == \
        ("id", 5, False, 7, "u", b"p", will)
    assert connect.properties.session_expiry_interval == 60
    assert connect.properties.receive_maximum == 10
    v31 = ClientProtocol(ConnectOptions("id", 3)).connect(0)
    assert v31.protocol_version == 3 and not v31.properties


def test_reconnect_asks_to_resume_in_mqtt5_but_keeps_clean_session_in_311() -> None:
    """[MQTT-3.1.2-4]: only the first CONNECT of an MQTT 5 client carries Clean Start 1."""
    for version, again in ((5, False), (4, True)):
        proto = connected(version, clean_start=True)
        proto.connection_lost()
        assert proto.connect(10).clean_start is again


def test_refused_connack_closes() -> None:
    proto = ClientProtocol(ConnectOptions("c", 5))
    proto.connect(0)
    out = proto.receive(ConnAck(False, 0x87), 1)
    assert out.refused == ConnAck(False, 0x87) and out.close and out.connected is None


def test_nothing_but_connack_before_connack() -> None:
    """[MQTT-3.2.0-1]: the server sends CONNACK first."""
    proto = ClientProtocol(ConnectOptions("c", 4))
    proto.connect(0)
    out = proto.receive(Publish("t", b"x"), 1)
    assert isinstance(out.error, RemoteProtocolError) and out.close
    assert "[MQTT-3.2.0-1]" in str(out.error)


def test_a_local_protocol_error_while_receiving_is_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """LocalProtocolError is a ProtocolError (an MQTTError) now, but a bug of this client's
    caller met while handling a packet is raised, not turned into a protocol failure of the
    server's (RemoteProtocolError, DISCONNECT, close)."""
    proto = connected()

    def bug(*args: object) -> None:
        raise LocalProtocolError("all 65535 packet identifiers are in use")

    monkeypatch.setattr(proto, "_receive", bug)
    with pytest.raises(LocalProtocolError):
        proto.receive(PingResp(), 2)
    assert proto.state is ConnState.CONNECTED


def test_second_connack_is_a_protocol_error_and_mqtt5_says_why() -> None:
    """[MQTT-3.2.0-2]; the client sends DISCONNECT 0x82 before closing (MQTT 5, 4.13)."""
    proto = connected(5)
    out = proto.receive(ConnAck(False, 0), 2)
    assert out.close and out.send == [Disconnect(0x82)]


def test_session_present_in_answer_to_clean_start_closes() -> None:
    """[MQTT-3.2.2-2] broken by the server: the client closes [MQTT-3.2.2-4]."""
    proto = ClientProtocol(ConnectOptions("c", 4, clean_start=True))
    proto.connect(0)
    out = proto.receive(ConnAck(True, 0), 1)
    assert out.close and "[MQTT-3.2.2-4]" in str(out.error)


def test_mqtt5_connack_properties_are_honoured() -> None:
    """Server Keep Alive [MQTT-3.2.2-21], Maximum QoS [MQTT-3.2.2-11], Retain Available
    [MQTT-3.2.2-14], Maximum Packet Size [MQTT-3.2.2-15], Assigned Client Identifier
    [MQTT-3.2.2-16]."""
    proto = ClientProtocol(ConnectOptions("", 5, keep_alive=60))
    proto.connect(0)
    props = Properties.of(server_keep_alive=5, maximum_qos=1, retain_available=0,
                          maximum_packet_size=64, assigned_client_identifier="auto-1")
    out = proto.receive(ConnAck(False, 0, props), 1)
    assert out.connected is not None and out.connected.keep_alive == 5
    assert proto.next_timer() == 5 * NS           # counted from the CONNECT, sent at 0
    with pytest.raises(LocalProtocolError, match=r"MQTT-3\.2\.2-11"):
        proto.publish(Publish("t", b"", 2), 2)
    with pytest.raises(LocalProtocolError, match=r"MQTT-3\.2\.2-14"):
        proto.publish(Publish("t", b"", 1, retain=True), 2)
    with pytest.raises(LocalProtocolError, match=r"MQTT-3\.2\.2-15"):
        proto.publish(Publish("t", b"x" * 100, 1), 2)
    assert proto.publish(Publish("t", b"ok", 1), 2)[0].packet_id == 1
    proto.connection_lost()
    assert proto.connect(3).client_id == "auto-1"


def test_receive_maximum_of_the_server_bounds_the_window() -> None:
    """[MQTT-4.9.0-2]: no more unacknowledged QoS > 0 PUBLISH than the Receive Maximum; the
    rest waits and goes out as acknowledgements come [MQTT-4.9.0-3: QoS 0 is not counted]."""
    proto = ClientProtocol(ConnectOptions("c", 5))
    proto.connect(0)
    proto.receive(ConnAck(False, 0, Properties.of(receive_maximum=2)), 1)
    sent = [proto.publish(Publish("t", bytes([i]), 1), 2) for i in range(4)]
    assert [len(s) for s in sent] == [1, 1, 0, 0]
    assert proto.publish(Publish("t", b"q0"), 2)                # QoS 0 still goes
    out = proto.receive(PubAck(1), 3)
    assert [p.payload for p in out.send] == [b"\x02"]           # type: ignore[union-attr]


# -- QoS flows ------------------------------------------------------------------------------------

def test_qos1_publish_completes_on_puback_with_its_reason_code() -> None:
    """[MQTT-4.3.2-1] [MQTT-4.3.2-3]; a reason >= 0x80 still ends the flow [MQTT-4.4.0-2]."""
    proto = connected(5)
    [p] = proto.publish(Publish("t", b"x", 1), 10, tag="A")
    assert isinstance(p, Publish) and p.packet_id == 1 and not p.dup
    out = proto.receive(PubAck(1, 0x87), 20)
    [done] = out.completed
    assert (done.tag, done.reason_code, done.t_first_ns, done.t_done_ns) == ("A", 0x87, 10, 20)


def test_qos2_publish_steps() -> None:
    """[MQTT-4.3.3-1] new id, [MQTT-4.3.3-3] PUBREC -> PUBREL, [MQTT-4.3.3-5] PUBCOMP ends."""
    proto = connected(4)
    [p] = proto.publish(Publish("t", b"x", 2), 10, tag="B")
    assert isinstance(p, Publish) and p.qos == 2 and p.packet_id == 1
    out = proto.receive(PubRec(1), 11)
    assert out.send == [PubRel(1)] and not out.completed
    out = proto.receive(PubComp(1), 12)
    assert [c.tag for c in out.completed] == ["B"]


def test_qos2_result_keeps_the_pubrec_reason() -> None:
    """PUBREC carries the informative code (0x10); PUBCOMP only whether the id was known."""
    proto = connected(5)
    proto.publish(Publish("t", b"", 2), 1)
    proto.publish(Publish("t", b"", 2), 1)
    assert proto.receive(PubRec(1, 0x10), 2).send == [PubRel(1)]
    out = proto.receive(PubComp(1), 3)
    assert out.pubrec_reasons == {1: 0x10}
    out = proto.receive(PubRec(2, 0x87), 4)           # refused: the flow ends here
    assert [c.reason_code for c in out.completed] == [0x87] and out.pubrec_reasons == {2: 0x87}


def test_incoming_qos1_and_qos2_are_acknowledged_and_delivered_once() -> None:
    """[MQTT-4.3.2-4] PUBACK; [MQTT-4.3.3-8] PUBREC; a DUP resend of a stored QoS 2 id is not
    delivered again [MQTT-4.3.3-10]; PUBREL -> PUBCOMP [MQTT-4.3.3-11]."""
    proto = connected(4)
    out = proto.receive(Publish("a", b"1", 1, packet_id=5), 1)
    assert out.send == [PubAck(5)] and len(out.deliver) == 1
    out = proto.receive(Publish("b", b"2", 2, packet_id=6), 2)
    assert out.send == [PubRec(6)] and len(out.deliver) == 1
    out = proto.receive(Publish("b", b"2", 2, dup=True, packet_id=6), 3)
    assert out.send == [PubRec(6)] and out.deliver == []
    out = proto.receive(PubRel(6), 4)
    assert out.send == [PubComp(6)]


def test_subscribe_and_publish_share_the_packet_id_space() -> None:
    """[MQTT-2.2.1-3]: a new SUBSCRIBE/UNSUBSCRIBE/PUBLISH takes an id not in use."""
    proto = connected(4)
    [p] = proto.publish(Publish("t", b"", 1), 1)
    sub = proto.subscribe([Subscription("a/#", 1)], 2, tag="S")
    unsub = proto.unsubscribe(["a/#"], 3, tag="U")
    assert isinstance(p, Publish)
    assert len({p.packet_id, sub.packet_id, unsub.packet_id}) == 3
    out = proto.receive(SubAck(sub.packet_id, (1,)), 4)
    assert out.acked == [("S", SubAck(sub.packet_id, (1,)))]
    assert "a/#" in proto.subscriptions
    out = proto.receive(UnsubAck(unsub.packet_id), 5)
    assert out.acked[0][0] == "U" and "a/#" not in proto.subscriptions
    assert proto.session.sender.ids.in_use == {p.packet_id}


def test_suback_with_the_wrong_number_of_codes_is_a_protocol_error() -> None:
    proto = connected(5)
    sub = proto.subscribe([Subscription("a", 0), Subscription("b", 0)], 1)
    out = proto.receive(SubAck(sub.packet_id, (0,)), 2)
    assert out.close and out.send == [Disconnect(0x82)]


def test_orphan_suback_is_counted_not_fatal() -> None:
    proto = connected(4)
    out = proto.receive(SubAck(99, (0,)), 1)
    assert not out.close and proto.orphan_acks == 1


@pytest.mark.parametrize("sub, version, match", [
    (Subscription("a/#/b"), 4, "wildcard|filter"),
    (Subscription("a", 3), 4, "QoS 3"),
    (Subscription("a", 0, no_local=True), 4, "only in MQTT 5"),
    (Subscription("$share/g/a", 0, no_local=True), 5, r"MQTT-3\.8\.3-4"),
    (Subscription("a", 0, retain_handling=3), 5, r"MQTT-3\.8\.3-5"),
])
def test_bad_subscriptions_are_refused_locally(sub: Subscription, version: int,
                                               match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        connected(version).subscribe([sub], 1)


@pytest.mark.parametrize("publish, version, match", [
    (Publish("a/+", b""), 4, r"MQTT-3\.3\.2-2"),
    (Publish("", b""), 4, r"MQTT-4\.7\.3-1"),
    (Publish("a", b"", 3), 4, "QoS 3"),
    (Publish("a", b"", properties=Properties.of(content_type="x")), 4, "only in MQTT 5"),
])
def test_bad_publishes_are_refused_locally(publish: Publish, version: int, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        connected(version).publish(publish, 1)


def test_qos0_is_not_queued_while_disconnected_but_qos1_is() -> None:
    proto = ClientProtocol(ConnectOptions("c", 4))
    with pytest.raises(NotConnected):
        proto.publish(Publish("t", b""), 0)
    assert proto.publish(Publish("t", b"", 1), 0, tag="Q") == []
    proto.connect(1)
    out = proto.receive(ConnAck(False, 0), 2)
    [p] = out.send
    assert isinstance(p, Publish) and p.packet_id == 1 and not p.dup


# -- reconnection and the session -----------------------------------------------------------------

def test_resend_on_reconnect_in_order_with_dup_and_pubrel() -> None:
    """[MQTT-4.4.0-1] resend unacknowledged PUBLISH and PUBREL with the original ids,
    [MQTT-3.3.1-1] DUP=1 on the resent PUBLISH, [MQTT-4.6.0-1] in the original order; a QoS 2
    flow past PUBREC is resent as PUBREL only [MQTT-4.3.3-6]."""
    proto = connected(4, clean_start=False)
    for i, qos in enumerate((1, 2, 2, 1)):
        proto.publish(Publish(f"t/{i}", b"", qos), i)
    proto.receive(PubRec(3), 10)                        # third one is past PUBREC
    send, lost = reconnect(proto, present=True)
    assert lost == []
    assert [(type(p).__name__, p.packet_id) for p in send] == [   # type: ignore[union-attr]
        ("Publish", 1), ("Publish", 2), ("PubRel", 3), ("Publish", 4)]
    assert all(p.dup for p in send if isinstance(p, Publish))
    # packet ids continue across the reconnection: the next flow does not reuse 1..4
    [nxt] = proto.publish(Publish("t/next", b"", 1), 200)
    assert isinstance(nxt, Publish) and nxt.packet_id == 5


def test_session_not_present_discards_the_session_and_reports_lost_flows() -> None:
    """[MQTT-3.2.2-5]: the client discards its session state; the flows are reported lost."""
    proto = connected(4, clean_start=False)
    proto.publish(Publish("t", b"", 1), 1, tag="lost1")
    proto.publish(Publish("t", b"", 2), 1, tag="lost2")
    proto.receive(Publish("in", b"", 2, packet_id=9), 2)   # inbound QoS 2 id stored
    send, lost = reconnect(proto, present=False)
    assert lost == ["lost1", "lost2"]
    assert not any(isinstance(p, Publish) for p in send)
    assert not proto.session.receiver.awaiting_pubrel


def test_mqtt31_has_no_session_present_flag_so_clean_session_0_resumes() -> None:
    """MQTT 3.1 (section 3.1, Clean session flag): with 0 the server resumes the session."""
    proto = connected(3, clean_start=False)
    proto.publish(Publish("t", b"", 1), 1)
    send, lost = reconnect(proto, present=False)
    assert lost == [] and isinstance(send[0], Publish) and send[0].dup


def test_subscriptions_are_renewed_when_the_session_was_not_resumed() -> None:
    proto = connected(4)
    sub = proto.subscribe([Subscription("a/#", 1), Subscription("b", 2)], 1)
    proto.receive(SubAck(sub.packet_id, (1, 0x80)), 2)         # b was refused
    send, _ = reconnect(proto, present=False)
    [again] = send
    assert isinstance(again, Subscribe) and again.subscriptions == (Subscription("a/#", 1),)


def test_connection_lost_fails_pending_subscribes_and_frees_their_ids() -> None:
    proto = connected(4)
    sub = proto.subscribe([Subscription("a", 0)], 1, tag="S")
    assert proto.connection_lost() == ["S"]
    assert sub.packet_id not in proto.session.sender.ids.in_use
    with pytest.raises(NotConnected):
        proto.subscribe([Subscription("a", 0)], 2)


def test_held_acks_go_out_when_released_and_end_with_their_connection() -> None:
    proto = connected(4)
    proto.acks.hold("puback")
    out = proto.receive(Publish("a", b"", 1, packet_id=3), 1)
    assert out.send == [] and len(out.deliver) == 1
    assert proto.release_acks(2, "puback") == [PubAck(3)]
    proto.receive(Publish("a", b"", 1, packet_id=4), 3)
    proto.connection_lost()
    assert proto.acks.discarded == 1
    with pytest.raises(NotConnected):
        proto.release_acks(4)


def test_held_pubrel_is_resent_by_the_session_after_reconnect() -> None:
    """Holding our PUBREL leaves the flow in WAIT_PUBCOMP; the reconnection resends the PUBREL
    [MQTT-4.4.0-1] and PUBCOMP then completes the flow."""
    proto = connected(4, clean_start=False)
    proto.acks.hold("pubrel", count=1)
    proto.publish(Publish("t", b"", 2), 1, tag="X")
    assert proto.receive(PubRec(1), 2).send == []
    send, _ = reconnect(proto, present=True)
    assert send == [PubRel(1)]
    assert [c.tag for c in proto.receive(PubComp(1), 300).completed] == ["X"]


# -- keep alive and DISCONNECT -------------------------------------------------------------------

def test_keep_alive_sends_pingreq_after_silence_and_closes_without_pingresp() -> None:
    """3.1.1 [MQTT-3.1.2-23] / 5.0 [MQTT-3.1.2-20]: PINGREQ when nothing else was sent for
    Keep Alive seconds; no PINGRESP within it closes the connection."""
    proto = connected(4, keep_alive=2)
    assert proto.next_timer() == 2 * NS           # counted from the CONNECT, sent at 0
    assert proto.handle_timer(NS).send == []                  # not due yet
    proto.publish(Publish("t", b""), NS)                      # sending anything resets it
    assert proto.next_timer() == 3 * NS
    assert proto.handle_timer(3 * NS).send == [PingReq()]
    proto.receive(PingResp(), 3 * NS + 5)
    assert proto.handle_timer(5 * NS).send == [PingReq()]
    out = proto.handle_timer(7 * NS)
    assert out.close and isinstance(out.error, ConnectionLost)


def test_keep_alive_zero_means_no_timer() -> None:
    assert connected(4, keep_alive=0).next_timer() is None


def test_disconnect_is_the_last_packet() -> None:
    """[MQTT-3.14.4-1]: nothing is sent after DISCONNECT."""
    proto = connected(5, session_expiry=30)
    assert proto.disconnect(1, 0x04, session_expiry=60) == Disconnect(
        0x04, Properties.of(session_expiry_interval=60))
    assert proto.state is ConnState.CLOSING
    assert proto.next_timer() is None
    assert proto.disconnect(2) is None


def test_disconnect_cannot_raise_a_zero_session_expiry() -> None:
    """[MQTT-3.14.2-2]."""
    with pytest.raises(LocalProtocolError, match=r"MQTT-3\.14\.2-2"):
        connected(5).disconnect(1, session_expiry=10)


def test_server_disconnect_closes() -> None:
    proto = connected(5)
    out = proto.receive(Disconnect(0x8E), 1)
    assert out.close and out.server_disconnect == Disconnect(0x8E)


@pytest.mark.parametrize("kwargs, field", [
    ({"version": 6}, "version"),
    ({"version": 4, "session_expiry": 5}, "session_expiry"),
    ({"version": 4, "client_id": "", "clean_start": False}, "client_id"),
    ({"version": 4, "password": b"x"}, "password"),
    ({"version": 5, "will": Will("a/#", b"")}, "will.topic"),
    ({"keep_alive": 70000}, "keep_alive"),
])
def test_bad_options_name_their_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConnectOptions(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


# -- property: resends across random drops ---------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["pub1", "pub2", "ack", "drop"]),
                          st.integers(0, 5)), max_size=40))
def test_every_message_completes_once_across_random_reconnections(
        steps: list[tuple[str, int]]) -> None:
    """Against a broker side built from the same QoS machines, whatever the drops: each
    message completes exactly once, resends carry DUP=1 and the original ids in order
    [MQTT-4.4.0-1] [MQTT-4.6.0-1], and ids in flight are unique [MQTT-2.2.1-3]."""
    proto = connected(4, clean_start=False)
    broker = Receiver(version=4)
    wire: list[Packet] = []           # c2b packets not yet answered by the broker
    completed: list[object] = []
    n = 0

    def absorb(out_send: list[Packet]) -> None:
        wire.extend(out_send)

    for action, k in steps:
        if action in ("pub1", "pub2"):
            absorb(proto.publish(Publish("t", b"", 1 if action == "pub1" else 2), n, tag=n))
            n += 1
        elif action == "ack" and wire:
            packet = wire.pop(min(k, len(wire) - 1))
            answer = _broker_answer(broker, packet)
            out = proto.receive(answer, n)
            completed.extend(c.tag for c in out.completed)
            absorb(out.send)
        elif action == "drop":
            wire.clear()              # in flight on the dead connection: lost
            before = [(f.publish.packet_id, f.state) for f in
                      proto.session.sender.in_flight.values()]
            send, lost = reconnect(proto, present=True, now=n)
            assert lost == []
            assert [p.packet_id for p in send] == [pid for pid, _ in before]  # type: ignore[union-attr]
            assert all(p.dup for p in send if isinstance(p, Publish))
            absorb(send)
        ids = list(proto.session.sender.in_flight)
        assert len(ids) == len(set(ids))
    while wire:                       # the broker answers everything in the end
        out = proto.receive(_broker_answer(broker, wire.pop(0)), n)
        completed.extend(c.tag for c in out.completed)
        wire.extend(out.send)
    assert sorted(completed) == list(range(n))


def _broker_answer(broker: Receiver, packet: Packet) -> Packet:
    if isinstance(packet, Publish):
        _deliver, ack = broker.on_publish(packet, 0)
        assert ack is not None
        return ack
    assert isinstance(packet, PubRel)
    return broker.on_pubrel(packet, 0)


def test_unsubscribe_and_subscribe_need_a_connection() -> None:
    proto = ClientProtocol(ConnectOptions("c", 4))
    with pytest.raises(NotConnected):
        proto.unsubscribe(["a"], 0)
    assert isinstance(connected(4).unsubscribe(["a"], 0), Unsubscribe)

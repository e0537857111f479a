"""The asyncio broker on real sockets, checked byte-exact with a raw client.

Each test cites the normative statement it shows. Everything listens on 127.0.0.1, free ports.
"""

from __future__ import annotations

import time

import pytest

from qosinspect.broker import BrokerConfig
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
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
    Will,
)
from qosinspect.mqtt.properties import Properties

from .harness import RawClient, run_broker, wait_for


def sub(client: RawClient, *filters: tuple[str, int], pid: int = 1,
        props: Properties | None = None) -> SubAck:
    client.send(Subscribe(pid, tuple(Subscription(f, q) for f, q in filters),
                          props or Properties()))
    ack = client.recv()
    assert isinstance(ack, SubAck)
    return ack


@pytest.mark.parametrize("version", [4, 5])
def test_redelivery_dup_original_ids_and_order_then_queue_MQTT_4_4_0_1(version: int) -> None:
    """Unacked PUBLISH resent with DUP=1 and its id, PUBREL after PUBREC, in order, then the
    queue; session present [MQTT-3.2.2-2]; never a resend on a live connection."""
    expiry = Properties.of(session_expiry_interval=300) if version == 5 else Properties()
    with run_broker() as b:
        s = RawClient(b.port, version=version)
        assert s.connect("sub", clean_start=False, properties=expiry) == ConnAck(False, 0) \
            or version == 5
        sub(s, ("r/#", 2))
        p = RawClient(b.port, version=version)
        p.connect("pub")
        p.send(Publish("r/a", b"a", 1, packet_id=1))
        p.send(Publish("r/b", b"b", 2, packet_id=2))
        p.send(Publish("r/c", b"c", 2, packet_id=3))
        got = [s.recv() for _ in range(3)]
        assert [g.payload for g in got if isinstance(g, Publish)] == [b"a", b"b", b"c"]
        ids = [g.packet_id for g in got if isinstance(g, Publish)]
        s.send(PubRec(ids[1]))                         # only b gets PUBREC
        assert s.recv() == PubRel(ids[1])
        with pytest.raises(AssertionError):            # no resend on a live connection
            s.recv(timeout=0.6)
        s.close()                                      # abrupt: no DISCONNECT
        wait_for(lambda: b.call(lambda: b.server.engine.sessions["sub"].conn is None),
                 what="the broker to see the subscriber gone")
        p.send(Publish("r/d", b"d", 1, packet_id=4))   # queued while offline
        s2 = RawClient(b.port, version=version)
        ack = s2.connect("sub", clean_start=False, properties=expiry)
        assert isinstance(ack, ConnAck) and ack.session_present and ack.reason_code == 0
        again = s2.recv_n(4)
        a, rel, c, d = again
        assert isinstance(a, Publish) and a.dup and a.packet_id == ids[0] and a.payload == b"a"
        assert rel == PubRel(ids[1])                                   # [MQTT-4.3.3-6]
        assert isinstance(c, Publish) and c.dup and c.packet_id == ids[2]
        assert isinstance(d, Publish) and not d.dup and d.payload == b"d"   # then the queue
        assert d.packet_id not in ids
        s2.close()
        p.close()


def test_incoming_qos2_dup_forwarded_once_MQTT_4_3_3_10() -> None:
    with run_broker() as b:
        s = RawClient(b.port)
        s.connect("s")
        sub(s, ("t", 2))
        p = RawClient(b.port)
        p.connect("p")
        msg = Publish("t", b"once", 2, packet_id=9)
        p.send(msg)
        assert p.recv() == PubRec(9)
        p.send(msg._replace(dup=True))                 # PUBREC lost, say: publisher resends
        assert p.recv() == PubRec(9)                   # acknowledged again, not delivered
        p.send(PubRel(9))
        assert p.recv() == PubComp(9)
        first = s.recv()
        assert isinstance(first, Publish) and first.payload == b"once"
        p.send(Publish("t", b"next", 2, packet_id=9))  # id free again: a new message
        assert p.recv() == PubRec(9)
        s.send(PubRec(first.packet_id or 0))
        nxt = [s.recv(), s.recv()]
        assert PubRel(first.packet_id or 0) in nxt
        assert [m.payload for m in nxt if isinstance(m, Publish)] == [b"next"]


def test_order_per_topic_MQTT_4_6_0_5() -> None:
    with run_broker() as b:
        s = RawClient(b.port)
        s.connect("s")
        sub(s, ("o/#", 1))
        p = RawClient(b.port)
        p.connect("p")
        for i in range(200):
            p.send(Publish("o/x", str(i).encode(), 1, packet_id=i + 1))
        seen: list[int] = []
        while len(seen) < 200:
            m = s.recv()
            if isinstance(m, Publish):
                seen.append(int(m.payload))
                s.send(PubAck(m.packet_id or 0))
        assert seen == list(range(200))


def test_malformed_packet_closes_with_0x81_others_unaffected_MQTT_4_13_1_1() -> None:
    with run_broker() as b:
        good = RawClient(b.port, version=5)
        good.connect("good")
        bad = RawClient(b.port, version=5)
        bad.connect("bad")
        bad.send_raw(bytes((0x36, 3, 0, 1, 0x61)))     # PUBLISH QoS 3 [MQTT-3.3.1-4]
        assert bad.recv() == Disconnect(0x81)
        assert bad.closed_by_peer()
        good.send(PingReq())
        assert good.recv() == PingResp()


def test_packet_too_large_0x95() -> None:
    with run_broker(engine=BrokerConfig(max_packet_size=1000)) as b:
        c = RawClient(b.port, version=5)
        ack = c.connect("c")
        assert isinstance(ack, ConnAck) and ack.properties.maximum_packet_size == 1000
        c.send(Publish("t", b"x" * 2000))
        assert c.recv() == Disconnect(0x95)
        assert c.closed_by_peer()


def test_unsupported_protocol_level_gets_connack_0x01_MQTT_3_1_2_2() -> None:
    with run_broker() as b:
        c = RawClient(b.port)
        c.send_raw(b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00")
        assert c.recv() == ConnAck(False, 0x01)
        assert c.closed_by_peer()


def test_first_packet_must_be_connect_MQTT_3_1_0_1_and_connect_timeout() -> None:
    with run_broker(engine=BrokerConfig(connect_timeout=0.3), tick_interval=0.05) as b:
        ping = RawClient(b.port)
        ping.send(PingReq())
        assert ping.closed_by_peer() and not ping.inbox
        silent = RawClient(b.port)
        t0 = time.monotonic()
        assert silent.closed_by_peer(timeout=5)
        assert time.monotonic() - t0 >= 0.25


@pytest.mark.parametrize("version", [4, 5])
def test_keep_alive_one_and_a_half_MQTT_3_1_2_22(version: int) -> None:
    with run_broker(tick_interval=0.05) as b:
        c = RawClient(b.port, version=version)
        c.connect("ka", keep_alive=1)
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=5)
        assert time.monotonic() - t0 >= 1.4
        if version == 5:
            assert c.inbox == [Disconnect(0x8D)]


def test_server_keep_alive_v5_and_v311_refused_above_max_MQTT_3_2_2_21() -> None:
    with run_broker(engine=BrokerConfig(max_keepalive=30)) as b:
        c5 = RawClient(b.port, version=5)
        ack = c5.connect("c5", keep_alive=600)
        assert isinstance(ack, ConnAck) and ack.properties.server_keep_alive == 30
        c4 = RawClient(b.port)
        assert c4.connect("c4", keep_alive=600) == ConnAck(False, 0x02)
        ok = RawClient(b.port)
        assert ok.connect("ok", keep_alive=20) == ConnAck(False, 0)


def test_session_takeover_on_the_wire_MQTT_3_1_4_3() -> None:
    with run_broker() as b:
        old = RawClient(b.port, version=5)
        old.connect("same")
        new = RawClient(b.port, version=5)
        ack = new.connect("same")
        assert isinstance(ack, ConnAck) and ack.reason_code == 0
        assert old.recv() == Disconnect(0x8E)
        assert old.closed_by_peer()
        new.send(PingReq())
        assert new.recv() == PingResp()


def test_inbound_topic_alias_MQTT_3_3_2_12() -> None:
    with run_broker() as b:
        s = RawClient(b.port, version=5)
        s.connect("s")
        sub(s, ("alias/#", 0))
        p = RawClient(b.port, version=5)
        ack = p.connect("p")
        assert isinstance(ack, ConnAck) and ack.properties.topic_alias_maximum
        p.send(Publish("alias/long/name", b"1", properties=Properties.of(topic_alias=1)))
        p.send(Publish("", b"2", properties=Properties.of(topic_alias=1)))
        got = s.recv_n(2)
        assert [(m.topic, m.payload) for m in got if isinstance(m, Publish)] == \
            [("alias/long/name", b"1"), ("alias/long/name", b"2")]
        assert all(isinstance(m, Publish) and m.properties.topic_alias is None for m in got)
        p.send(Publish("", b"3", properties=Properties.of(topic_alias=2)))   # never set
        assert p.recv() == Disconnect(0x82)


def test_receive_maximum_window_MQTT_4_9_0_2() -> None:
    with run_broker() as b:
        s = RawClient(b.port, version=5)
        s.connect("s", properties=Properties.of(receive_maximum=2))
        sub(s, ("w", 1))
        p = RawClient(b.port)
        p.connect("p")
        for i in range(5):
            p.send(Publish("w", bytes([i]), 1, packet_id=i + 1))
        first = s.recv_n(2)
        with pytest.raises(AssertionError):
            s.recv(timeout=0.4)                        # the window is full
        s.send(PubAck(first[0].packet_id))  # type: ignore[union-attr]
        third = s.recv()
        assert isinstance(third, Publish) and third.payload == b"\x02"


def test_client_maximum_packet_size_not_exceeded_MQTT_3_1_2_25() -> None:
    with run_broker() as b:
        s = RawClient(b.port, version=5)
        s.connect("s", properties=Properties.of(maximum_packet_size=100))
        sub(s, ("m", 1))
        p = RawClient(b.port)
        p.connect("p")
        p.send(Publish("m", b"x" * 200, 1, packet_id=1))
        p.send(Publish("m", b"small", 1, packet_id=2))
        got = s.recv()
        assert isinstance(got, Publish) and got.payload == b"small"
        assert b.call(lambda: b.server.stats.dropped_too_large) == 1


def test_assigned_client_identifier_MQTT_3_2_2_16() -> None:
    with run_broker() as b:
        c = RawClient(b.port, version=5)
        ack = c.connect("")
        assert isinstance(ack, ConnAck) and ack.reason_code == 0
        assigned = ack.properties.assigned_client_identifier
        assert assigned and b.call(lambda: assigned in b.server.engine.sessions)
        v4 = RawClient(b.port)
        assert v4.connect("", clean_start=False) == ConnAck(False, 0x02)   # [MQTT-3.1.3-8]
        v4clean = RawClient(b.port)
        assert v4clean.connect("") == ConnAck(False, 0)     # 3.1.1 clean: assigned [MQTT-3.1.3-6]
        v3 = RawClient(b.port, version=3)
        assert v3.connect("") == ConnAck(False, 0x02)            # MQTT 3.1: 1-23 characters


def test_backpressure_pauses_publisher_without_loss() -> None:
    """A subscriber that acks slowly pauses its publisher (stats) and still gets every message.
    (It must have acknowledged something first: one that never did pauses nobody; the long
    timeout keeps a loaded machine from making it look slow.)"""
    cfg = BrokerConfig(max_inflight=1, max_queued_messages=10, slow_subscriber_timeout=30)
    with run_broker(engine=cfg) as b:
        s = RawClient(b.port)
        s.connect("slow")
        sub(s, ("bp", 1))
        p = RawClient(b.port)
        p.connect("p")
        p.send(Publish("bp", b"-1", 1, packet_id=1000))
        first = s.recv()
        assert isinstance(first, Publish) and first.payload == b"-1"
        s.send(PubAck(first.packet_id or 0))
        assert p.recv() == PubAck(1000)
        wait_for(lambda: b.call(lambda: b.server.engine.sessions["slow"].conn.last_ack_ns),
                 what="the broker to see the subscriber's PUBACK")
        n = 300
        p.sock.sendall(b"".join(encode(Publish("bp", str(i).encode(), 1, packet_id=i + 1))
                                for i in range(n)))
        wait_for(lambda: b.call(lambda: b.server.stats.publishers_paused) > 0,
                 what="the publisher to be paused")
        seen = []
        while len(seen) < n:
            m = s.recv()
            assert isinstance(m, Publish)
            seen.append(int(m.payload))
            s.send(PubAck(m.packet_id or 0))
        assert seen == list(range(n))
        acks = [p.recv() for _ in range(n)]
        assert {a.packet_id for a in acks} == set(range(1, n + 1))  # type: ignore[union-attr]
        stats = b.call(lambda: b.server.stats)
        assert stats.dropped_qos0 == 0 and b.call(
            lambda: b.server.engine.sessions["slow"].state.dropped) == 0


def test_paused_publisher_that_disconnects_still_counts_its_last_packets() -> None:
    """Packets read but held back by backpressure are handled when the client goes: its
    DISCONNECT still discards the will [MQTT-3.1.2-10] and its messages are delivered."""
    cfg = BrokerConfig(max_inflight=1, max_queued_messages=5)
    with run_broker(engine=cfg) as b:
        s = RawClient(b.port)
        s.connect("s")
        sub(s, ("bp/#", 1), ("will", 0))
        p = RawClient(b.port)
        p.connect("p", will=Will("will", b"should not be sent"))
        batch = b"".join(encode(Publish("bp/x", str(i).encode(), 1, packet_id=i + 1))
                         for i in range(50))
        p.send_raw(batch + encode(Disconnect()))
        p.close()
        seen: list[bytes] = []
        while len(seen) < 50:
            m = s.recv()
            assert isinstance(m, Publish) and m.topic == "bp/x", m
            seen.append(m.payload)
            s.send(PubAck(m.packet_id or 0))
        assert seen == [str(i).encode() for i in range(50)]
        with pytest.raises(AssertionError):
            s.recv(timeout=0.3)                        # and no will


def _v5_publish(body: bytes) -> bytes:
    return bytes((0x30, len(body))) + body


def _connect_as(name: bytes, level: int) -> bytes:
    """An MQTT 5 CONNECT with another protocol name and level (both 4 bytes long)."""
    data = bytearray(encode(Connect("again", 5), 5))
    at = data.index(b"\x00\x04MQTT")
    data[at + 2:at + 7] = name + bytes((level,))
    return bytes(data)


@pytest.mark.parametrize(("data", "reason"), [
    (bytes((0x36, 3, 0, 1, 0x61)), 0x81),                          # QoS 3 [MQTT-3.3.1-4]
    (_v5_publish(b"\x00\x03a/+\x00x"), 0x90),                      # wildcard in a topic name
    (_v5_publish(b"\x00\x01a\x02\x7f\x00x"), 0x81),                 # unknown property id
    (_v5_publish(b"\x00\x01a\x0a" + b"\x02\x00\x00\x00\x01" * 2), 0x82),   # property twice
    (_v5_publish(b"\x00\x01a\x03\x23\x00\x00"), 0x82),             # topic alias 0
    (bytes((0x80, 6, 0, 1, 0, 0, 0x61, 0)), 0x81),                 # SUBSCRIBE flags not 0b0010
    (encode(Connect("again", 5), 5), 0x82),                        # second CONNECT [MQTT-3.1.0-2]
    # ... even one the codec cannot read: its 0x84 / 0x01 are CONNACK codes, not DISCONNECT's
    (_connect_as(b"MQTT", 9), 0x82),
    (_connect_as(b"MQTX", 5), 0x82),
    (bytes((0xF0, 0)), 0x82),                                      # AUTH: none was offered
    (bytes((0x20, 3, 0, 0, 0)), 0x82),                             # a server-only packet
    (bytes((0x30, 0xFF, 0xFF, 0xFF, 0xFF)), 0x81),                 # a 5-byte length
])
def test_malformed_and_protocol_errors_get_their_reason_code_MQTT_4_13_1_1(
        data: bytes, reason: int) -> None:
    with run_broker() as b:
        c = RawClient(b.port, version=5)
        c.connect("bad")
        c.send_raw(data)
        assert c.recv() == Disconnect(reason)
        assert c.closed_by_peer()

"""Issue 12, points 6 to 8, on the wire: the Payload Format Indicator is checked (0x82 / 0x99),
bytes that are not MQTT are closed at once (not at the CONNECT timeout), and the broker sets
topic aliases towards MQTT 5 clients that allow them (raw sockets, and mosquitto_sub as the
real peer that must resolve them)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from qosinspect.broker import BrokerConfig
from qosinspect.events import Event, MqttPacketEvent
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import (
    ConnAck,
    Disconnect,
    PubAck,
    Publish,
    PubRec,
    SubAck,
    Subscribe,
    Subscription,
    Will,
)
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.tools import require_tool

from .harness import RawClient, mosquitto_sub, run_broker, wait_for


def _v5(port: int, client_id: str, **props: int) -> RawClient:
    c = RawClient(port, version=5)
    ack = c.connect(client_id, properties=Properties.of(**props) if props else Properties())
    assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
    return c


# -- 6. Payload Format Indicator ----------------------------------------------------------------

def test_payload_format_indicator_other_than_0_or_1_is_a_protocol_error() -> None:
    with run_broker() as b:
        s = _v5(b.port, "s")
        s.send(Subscribe(1, (Subscription("pfi/#", 1),)))
        assert isinstance(s.recv(), SubAck)
        p = _v5(b.port, "p")
        p.send(Publish("pfi/x", b"text", 1, packet_id=1,
                       properties=Properties.of(payload_format_indicator=2)))
        assert p.recv() == Disconnect(0x82)
        assert p.closed_by_peer()
        with pytest.raises(AssertionError, match="in time"):
            s.recv(timeout=0.3)                                   # and never forwarded


def test_payload_format_utf8_that_is_not_utf8_is_refused_0x99() -> None:
    with run_broker() as b:
        p = _v5(b.port, "p")
        utf8 = Properties.of(payload_format_indicator=1)
        p.send(Publish("pfi/x", b"\xff\xfe", 1, packet_id=1, properties=utf8))
        p.send(Publish("pfi/x", b"\xff\xfe", 2, packet_id=2, properties=utf8))
        p.send(Publish("pfi/x", "ok \u00e9".encode(), 1, packet_id=3, properties=utf8))
        assert p.recv_n(3) == [PubAck(1, 0x99), PubRec(2, 0x99), PubAck(3)]
        p.send(Publish("pfi/x", b"\xff", 0, properties=utf8))     # QoS 0: nothing to refuse
        assert p.recv() == Disconnect(0x99)


def test_will_with_a_bad_payload_format_indicator_is_refused() -> None:
    with run_broker() as b:
        c = RawClient(b.port, version=5)
        will = Will("w", b"x", properties=Properties.of(payload_format_indicator=7))
        assert c.connect("c", will=will) == ConnAck(False, 0x82)
        assert c.closed_by_peer()


# -- 7. not MQTT --------------------------------------------------------------------------------

@pytest.mark.parametrize("first", [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",                  # a browser, curl
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",                  # a TLS ClientHello
    b"SSH-2.0-OpenSSH_9.2\r\n",
])
def test_bytes_that_are_not_mqtt_are_closed_at_once(first: bytes) -> None:
    """The CONNECT timeout is 10 s; a connection that starts with anything but CONNECT is
    closed within a second, and nothing is sent to it."""
    with run_broker() as b:
        sock = socket.create_connection(("127.0.0.1", b.port), timeout=1.0)
        sock.sendall(first)
        try:
            assert sock.recv(100) == b""                          # closed, no answer
        except TimeoutError:
            pytest.fail("the connection is still open after 1 s")
        finally:
            sock.close()
        assert b.call(lambda: len(b.server.connections)) == 0 or wait_for(
            lambda: b.call(lambda: len(b.server.connections)) == 0, 2, "the close")


# -- 8. server topic aliases --------------------------------------------------------------------

def _received(port: int, alias_max: int | None, topics: list[str]) -> list[Publish]:
    props = {"topic_alias_maximum": alias_max} if alias_max is not None else {}
    s = _v5(port, "s", **props)
    s.send(Subscribe(1, (Subscription("ta/#", 0),)))
    assert isinstance(s.recv(), SubAck)
    p = _v5(port, "p")
    for i, topic in enumerate(topics):
        p.send(Publish(topic, b"%d" % i, 0))
    got = [s.recv() for _ in topics]
    assert all(isinstance(m, Publish) for m in got)
    return got  # type: ignore[return-value]


def test_broker_sets_topic_aliases_with_an_lru_of_the_clients_maximum() -> None:
    events: list[Event] = []
    topics = ["ta/a", "ta/a", "ta/b", "ta/c", "ta/a", "ta/c"]
    with run_broker(tap=events.append) as b:
        got = _received(b.port, 2, topics)
    assert [m.topic for m in got] == topics          # what the client's decoder resolves
    sent = [e.packet for e in events if isinstance(e, MqttPacketEvent)
            and e.direction is Direction.B2C and isinstance(e.packet, Publish)]
    wire = [(m.topic, m.properties.topic_alias) for m in sent]   # what went on the wire
    assert wire == [("ta/a", 1), ("", 1),       # the first names it, the second uses it
                    ("ta/b", 2),
                    ("ta/c", 1),                # both taken: ta/a was used least recently
                    ("ta/a", 2),                # ta/a again: takes ta/b's number
                    ("", 1)]                    # ta/c still has 1
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4", b"5"]


def test_no_topic_alias_unless_the_client_allows_it_or_when_turned_off() -> None:
    with run_broker() as b:
        assert all(m.properties.topic_alias is None and m.topic == "ta/a"
                   for m in _received(b.port, None, ["ta/a"] * 3))
    with run_broker(engine=BrokerConfig(outgoing_topic_aliases=0)) as b:
        assert all(m.properties.topic_alias is None and m.topic == "ta/a"
                   for m in _received(b.port, 10, ["ta/a"] * 3))


def test_mosquitto_sub_resolves_the_brokers_topic_aliases() -> None:
    """A real MQTT 5 client that allows 2 aliases gets 3 topics in turn, twice: every line it
    prints has the right topic (libmosquitto resolves our aliases)."""
    require_tool("mosquitto_sub")
    topics = ["ta/one", "ta/two", "ta/three"] * 2
    with run_broker() as b:
        sub = mosquitto_sub(b.port, "-V", "mqttv5", "-t", "ta/#", "-v", "-C", str(len(topics)),
                            "-D", "connect", "topic-alias-maximum", "2", "-i", "msub")
        try:
            wait_for(lambda: b.call(lambda: "msub" in b.server.engine.sessions and
                                    bool(b.server.engine.sessions["msub"].subs)), 10,
                     "mosquitto_sub's subscription")
            aliased = b.call(lambda: b.server.engine.sessions["msub"].conn.aliases is not None)
            p = _v5(b.port, "p")
            for i, topic in enumerate(topics):
                p.send(Publish(topic, b"m%d" % i, 0))
            out, err = sub.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            sub.kill()
            raise
    assert aliased
    assert out.splitlines() == [f"{t} m{i}" for i, t in enumerate(topics)], err

"""Hostile and broken clients never harm the others.

Malformed-packet fuzzing (in memory with hypothesis, and a bounded mutation loop against a
running broker while a publisher and a subscriber keep exchanging QoS 1 messages without
loss); a flood of 1,000 connections; slow readers at QoS 0 and QoS 1; clients that never send
CONNECT. The broker's event loop must never see an unhandled error (the harness checks).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.broker import BrokerConfig, BrokerThread, Listener, ServerConfig
from qosinspect.broker.engine import BrokerEngine
from qosinspect.errors import MQTTError
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
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
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)
from qosinspect.mqtt.properties import Properties

from .harness import RawClient, run_broker, wait_for

CORPUS_V4 = [
    encode(Connect("fz", 4, will=Will("w", b"x", 1)), 4),
    encode(Publish("a/b", b"payload", 1, packet_id=7), 4),
    encode(Publish("a/b", b"q2", 2, packet_id=8), 4),
    encode(Subscribe(3, (Subscription("a/#", 2), Subscription("b/+", 1))), 4),
    encode(Unsubscribe(4, ("a/#",)), 4),
    encode(PubRel(8), 4), encode(PubAck(1), 4), encode(PubRec(2), 4), encode(PubComp(3), 4),
    encode(PingReq(), 4), encode(Disconnect(), 4),
]
CORPUS_V5 = [
    encode(Connect("fz5", 5, properties=Properties.of(session_expiry_interval=10,
                                                      receive_maximum=5)), 5),
    encode(Publish("a/b", b"p", 1, packet_id=9,
                   properties=Properties.of(topic_alias=1, message_expiry_interval=5,
                                            user_property=[("k", "v")])), 5),
    encode(Subscribe(5, (Subscription("x/#", 1, no_local=True),),
                     Properties.of(subscription_identifier=3)), 5),
    encode(Disconnect(0x04, Properties.of(session_expiry_interval=0)), 5),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of: flipped bytes, a cut, an insertion, a huge length, or plain garbage."""
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1 and len(b) > 1:
        del b[rng.randrange(1, len(b)):]
    elif kind == 2:
        pos = rng.randrange(len(b) + 1)
        b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 3 and len(b) > 2:
        b[1:2] = bytes((0xFF, 0xFF, 0xFF, 0x7F))            # 256 MB remaining length
    elif kind == 4:
        b = bytearray(rng.randbytes(rng.randint(1, 64)))
    else:
        b[0] = rng.randrange(256)                           # any type and flags
    return bytes(b)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([4, 5]), st.lists(st.binary(max_size=40), max_size=6),
       st.randoms(use_true_random=False))
def test_engine_survives_any_bytes_after_connect(version: int, chunks: list[bytes],
                                                  rng: random.Random) -> None:
    """Whatever follows a valid CONNECT, the decoder raises MQTTError or yields packets the
    engine handles; nothing else escapes, and a closed connection stays closed."""
    engine = BrokerEngine()
    other = engine.open(0)
    engine.receive(other, Connect("other", 4), 0)
    conn = engine.open(0)
    decoder = StreamDecoder(4)
    corpus = CORPUS_V5 if version == 5 else CORPUS_V4
    stream = [corpus[0]] + [mutate(rng, rng.choice(corpus)) if c else rng.choice(corpus)
                            for c in chunks]
    for i, data in enumerate(stream):
        try:
            packets = decoder.feed(data)
        except MQTTError as exc:
            engine.close(conn, exc.reason_code, i)
            break
        for packet in packets:
            engine.receive(conn, packet, i)  # type: ignore[arg-type]
        if conn.closed:
            break
    engine.connection_lost(conn, 99)
    engine.tick(100)
    assert not other.closed and other.session is not None


def _good_pair(port: int, n: int, stop: threading.Event) -> tuple[threading.Thread, list[int]]:
    """A subscriber and a publisher exchanging ``n`` QoS 1 messages in a thread."""
    got: list[int] = []

    def run() -> None:
        s = RawClient(port, timeout=20)
        s.connect("good-sub")
        s.send(Subscribe(1, (Subscription("good", 1),)))
        s.recv()
        p = RawClient(port, timeout=20)
        p.connect("good-pub")
        for i in range(n):
            p.send(Publish("good", str(i).encode(), 1, packet_id=i % 60000 + 1))
            assert p.recv(timeout=20) == PubAck(i % 60000 + 1)
            m = s.recv(timeout=20)
            assert isinstance(m, Publish)
            got.append(int(m.payload))
            s.send(PubAck(m.packet_id or 0))
            time.sleep(0.001)                           # spread over the fuzzing
        stop.set()
        s.close()
        p.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, got


def test_mutation_fuzzing_against_a_running_broker_while_others_lose_nothing() -> None:
    rng = random.Random(20240601)
    with run_broker(engine=BrokerConfig(connect_timeout=1.0), tick_interval=0.05) as b:
        stop = threading.Event()
        worker, got = _good_pair(b.port, 600, stop)
        attempts = 0
        while attempts < 600:
            attempts += 1
            version = rng.choice([4, 5])
            corpus = CORPUS_V5 if version == 5 else CORPUS_V4
            with socket.create_connection(("127.0.0.1", b.port), timeout=5) as sock:
                try:
                    if rng.random() < 0.7:
                        sock.sendall(corpus[0])           # a valid CONNECT, then garbage
                    for _ in range(rng.randint(1, 4)):
                        sock.sendall(mutate(rng, rng.choice(corpus)))
                    if rng.random() < 0.3:
                        sock.settimeout(0.05)
                        sock.recv(4096)
                except OSError:
                    pass                                  # the broker closed it: fine
        worker.join(60)
        assert not worker.is_alive()
        assert got == list(range(600))
        wait_for(lambda: b.call(lambda: len(b.server.connections)) == 0, timeout=5,
                 what="every fuzzing connection to be closed")


def test_flood_of_1000_connections() -> None:
    n = 1000
    with run_broker() as b:
        socks = []
        try:
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
                s.sendall(encode(Connect(f"flood-{i}", 4), 4))
                socks.append(s)
            for s in socks:
                head = b""
                while len(head) < 4:
                    chunk = s.recv(4 - len(head))
                    assert chunk, "closed instead of CONNACK"
                    head += chunk
                assert head == encode(ConnAck(False, 0), 4)
            assert b.call(lambda: len(b.server.connections)) == n
            c = RawClient(b.port)
            c.connect("still-fine")
            c.send(PingReq())
            assert c.recv() == PingResp()
            c.close()
        finally:
            for s in socks:
                s.close()
        wait_for(lambda: b.call(lambda: len(b.server.connections)) == 0,
                 what="the flood to be closed")
        assert b.call(lambda: len(b.server.engine.sessions)) == 0


def test_connection_limit_refuses_the_extra_ones() -> None:
    with run_broker(max_connections=20) as b:
        clients = [RawClient(b.port) for _ in range(20)]
        for i, c in enumerate(clients):
            assert c.connect(f"c{i}") == ConnAck(False, 0)
        extra = RawClient(b.port)
        assert extra.closed_by_peer()
        assert b.call(lambda: b.server.refused_connections) == 1
        for c in clients:
            c.close()


def test_clients_that_never_send_connect_are_closed_others_unaffected() -> None:
    with run_broker(engine=BrokerConfig(connect_timeout=0.5), tick_interval=0.05) as b:
        silent = [socket.create_connection(("127.0.0.1", b.port)) for _ in range(50)]
        half = socket.create_connection(("127.0.0.1", b.port))
        half.sendall(encode(Connect("slowloris", 4), 4)[:5])      # a CONNECT that never ends
        good = RawClient(b.port)
        good.connect("good", keep_alive=60)
        try:
            for s in [*silent, half]:
                s.settimeout(5)
                assert s.recv(10) == b""                          # closed by the broker
            good.send(PingReq())
            assert good.recv() == PingResp()
        finally:
            for s in [*silent, half]:
                s.close()
            good.close()


def _slow_and_fast_subscribers(b: BrokerThread, topic: str, qos: int, version: int
                               ) -> tuple[socket.socket, RawClient]:
    """Two subscribers to ``topic``: "slow" on a raw socket with a small receive buffer that
    the test never reads, and "fast", a client that reads; both subscribed when this returns."""
    slow = socket.create_connection(("127.0.0.1", b.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(encode(Connect("slow", version), version) +
                 encode(Subscribe(1, (Subscription(topic, qos),)), version))
    fast = RawClient(b.port)
    fast.connect("fast")
    fast.send(Subscribe(1, (Subscription(topic, qos),)))
    fast.recv()
    wait_for(lambda: b.call(lambda: topic in b.server.engine.sessions["slow"].subs),
             what="the slow subscription")
    return slow, fast


def test_slow_reader_at_qos0_is_dropped_for_not_others() -> None:
    """A subscriber that never reads: QoS 0 to it is dropped and counted; memory stays bounded
    by the write high-water mark; a normal subscriber gets every message."""
    with run_broker(write_high_water=64 * 1024) as b:
        slow, fast = _slow_and_fast_subscribers(b, "flood", 0, 4)
        p = RawClient(b.port)
        p.connect("p")
        n = 12_000                  # 12 MB: more than the kernel buffers (4 MB) can hide
        payload = b"x" * 1000
        received = 0

        def drain() -> None:
            nonlocal received
            while received < n:
                m = fast.recv(timeout=10)
                if isinstance(m, Publish):
                    received += 1

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        for i in range(n):
            p.send(Publish("flood", payload + str(i).encode()))
        reader.join(30)
        assert received == n
        stats = b.call(lambda: b.server.stats)
        assert stats.dropped_qos0 > 0
        buffered = b.call(lambda: b.server.connections[
            b.server.engine.sessions["slow"].conn.conn_id].transport.get_write_buffer_size())
        assert buffered < 64 * 1024 + 256 * 1024   # bounded: the high water + one read's batch
        slow.close()


def test_slow_reader_at_qos1_pauses_nobody_and_is_dropped() -> None:
    """A QoS 1 subscriber that never reads pauses no publisher (issue 12: it used to hold them
    for slow_subscriber_timeout); once its queue is full and it has acknowledged nothing for
    that long it is disconnected (0x97), and the subscriber that reads gets everything."""
    cfg = BrokerConfig(max_queued_messages=50, slow_subscriber_timeout=1.0)
    with run_broker(engine=cfg, tick_interval=0.05, write_high_water=16 * 1024) as b:
        slow, fast = _slow_and_fast_subscribers(b, "q1", 1, 5)
        slow_session = b.call(lambda: b.server.engine.sessions["slow"])
        p = RawClient(b.port, timeout=20)
        p.connect("p")
        n = 2000
        got: list[int] = []

        def drain() -> None:
            while len(got) < n:
                m = fast.recv(timeout=20)
                if isinstance(m, Publish):
                    got.append(int(m.payload[:8]))
                    fast.send(PubAck(m.packet_id or 0))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        for i in range(n):
            p.send(Publish("q1", b"%08d" % i + b"y" * 500, 1, packet_id=i % 65000 + 1))
        acks = 0
        while acks < n:
            if isinstance(p.recv(timeout=20), PubAck):
                acks += 1
        reader.join(30)
        assert got == list(range(n))                   # nothing lost, in order
        wait_for(lambda: b.call(lambda: b.server.stats.slow_subscribers_closed) == 1, 10,
                 "the slow subscriber to be dropped")
        assert slow_session.paused_publishers == 0     # the reader may pause it, not the other
        assert b.call(lambda: "slow" not in b.server.engine.sessions)   # clean session: gone
        slow.close()


def test_a_bug_while_serving_one_client_closes_only_that_client(
        caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception (a bug) while handling one client's packet is logged and
    counted, that client gets DISCONNECT 0x83 and goes; the broker and the others carry on."""
    with BrokerThread(ServerConfig([Listener("127.0.0.1", 0)])) as b:
        engine = b.server.engine
        real = engine.receive

        def buggy(conn: Any, packet: Any, now: int) -> None:
            if isinstance(packet, Publish) and packet.topic == "boom":
                raise RuntimeError("a bug")
            real(conn, packet, now)

        engine.receive = buggy  # type: ignore[method-assign]
        good = RawClient(b.port)
        good.connect("good")
        bad = RawClient(b.port, version=5)
        bad.connect("bad")
        bad.send(Publish("boom", b"x"))
        assert bad.recv() == Disconnect(0x83)
        assert bad.closed_by_peer()
        good.send(PingReq())
        assert good.recv() == PingResp()
        assert b.server.internal_errors == 1
    assert "internal error while handling Publish" in caplog.text

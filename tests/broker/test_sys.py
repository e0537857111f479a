"""Issue 12, point 9: the ``$SYS`` tree (mosquitto's topics) and the QoS view only this broker
has, computed from its own handshakes; readable only where the ACL allows; never publishable
by a client."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from ddsketch import DDSketch

from qosinspect.broker import AccessControl, Authenticator, BrokerConfig, PasswordFile, sysinfo
from qosinspect.broker.engine import BrokerEngine
from qosinspect.broker.sysinfo import QosView, SysTree
from qosinspect.mqtt.packets import (
    ConnAck,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    SubAck,
    Subscribe,
    Subscription,
)
from qosinspect.mqtt.qos import Completed

from .harness import RawClient, run_broker
from .test_engine import connect, pubs, subscribe, take

MS = 1_000_000
MOSQUITTO_TOPICS = {
    "version", "uptime", "clients/connected", "clients/total", "clients/maximum",
    "clients/disconnected", "messages/received", "messages/sent",
    "load/messages/received/1min", "load/messages/sent/5min", "load/connections/15min",
    "subscriptions/count", "retained messages/count", "heap/current",
}
QOS_TOPICS = {f"qos/{q}/{name}" for q in (1, 2)
              for name in ("inflight", "redelivered", "handshake_ms/p50", "handshake_ms/p99")}


def test_handshake_quantiles_inflight_and_redelivered_come_from_the_brokers_flows() -> None:
    e = BrokerEngine()
    s = connect(e, "s", clean_start=False)
    subscribe(e, s, Subscription("t", 2))
    p = connect(e, "p")
    for i in range(100):                              # QoS 1 handshakes of 1..100 ms
        e.receive(p, Publish("t", b"x", 1, packet_id=1), i * 1000 * MS)
        (m,) = pubs(take(s))
        e.receive(s, PubAck(m.packet_id or 0), i * 1000 * MS + (i + 1) * MS)
    e.receive(p, Publish("t", b"y", 2, packet_id=2), 200_000 * MS)   # QoS 2: 30 ms
    (m,) = pubs(take(s))
    e.receive(s, PubRec(m.packet_id or 0), 200_010 * MS)
    e.receive(s, PubComp(m.packet_id or 0), 200_030 * MS)
    e.receive(p, Publish("t", b"z", 1, packet_id=3), 201_000 * MS)   # in flight, then resent
    take(s)
    e.connection_lost(s, 201_001 * MS)
    s2 = connect(e, "s", clean_start=False, now=202_000 * MS)
    assert [m.dup for m in pubs(take(s2))] == [True]
    values = SysTree("test", 0).values(e, 203_000 * MS, 1234)
    assert abs(float(values["qos/1/handshake_ms/p50"]) - 50) <= 1     # DDSketch: 1 %
    assert abs(float(values["qos/1/handshake_ms/p99"]) - 99) <= 2
    assert abs(float(values["qos/2/handshake_ms/p50"]) - 30) <= 0.5
    assert values["qos/1/inflight"] == "1" and values["qos/2/inflight"] == "0"
    assert values["qos/1/redelivered"] == "1" and values["qos/2/redelivered"] == "0"
    assert values["clients/connected"] == "2" and values["subscriptions/count"] == "1"
    assert values["messages/received"] == "102" and values["heap/current"] == "1234"
    assert values["uptime"] == "203 seconds"


def test_handshakes_between_two_publications_count_in_the_next_one() -> None:
    """The sketch is fed when $SYS is published: what completed since the last publication is in
    the next one, and every flow since the start stays in (p50/p99 move as they should)."""
    e = BrokerEngine()
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 1))
    p = connect(e, "p")
    tree = SysTree("test", 0)

    def flows(first: int, durations_ms: list[int]) -> None:
        for i, ms in enumerate(durations_ms):
            t = (first + i) * 1000 * MS
            e.receive(p, Publish("t", b"x", 1, packet_id=1), t)
            (m,) = pubs(take(s))
            e.receive(s, PubAck(m.packet_id or 0), t + ms * MS)

    flows(0, [10] * 100)
    first = tree.values(e, 500_000 * MS, None)
    assert first["qos/1/handshake_ms/p50"] == first["qos/1/handshake_ms/p99"]
    assert abs(float(first["qos/1/handshake_ms/p50"]) - 10) <= 0.1
    flows(1000, [30] * 300)                           # now 3 of 4 flows took 30 ms
    second = tree.values(e, 2_000_000 * MS, None)
    assert abs(float(second["qos/1/handshake_ms/p50"]) - 30) <= 0.3
    flows(2000, [10] * 400)                           # 500 x 10 ms, 300 x 30 ms since the start
    third = tree.values(e, 3_000_000 * MS, None)
    assert abs(float(third["qos/1/handshake_ms/p50"]) - 10) <= 0.1
    assert abs(float(third["qos/1/handshake_ms/p99"]) - 30) <= 0.3
    assert e.qos_view.sketches[1].count == 800 and "qos/2/handshake_ms/p50" not in third


def _flow(qos: int, t_first: int, t_done: int) -> Completed:
    return Completed(Publish("t", b"", qos, packet_id=1), 0, t_first, t_done, 1)


def test_qos_view_folded_in_batches_is_the_sketch_of_every_flow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Durations are kept in an array and folded (equal ones with one weighted add) when read or
    when FOLD_AT are waiting: the same sketch as adding each flow, in bounded memory; a wall
    clock that stepped back counts 0 ms, as before."""
    monkeypatch.setattr(sysinfo, "FOLD_AT", 64)
    rng = random.Random(12)
    view = QosView()
    reference = {1: DDSketch(relative_accuracy=0.01), 2: DDSketch(relative_accuracy=0.01)}
    for _ in range(1000):
        qos = rng.choice((1, 2))
        t_first = rng.randrange(10**12)
        # many equal durations (one socket read acknowledges several flows), some unique ones,
        # and a few negative ones (time.time_ns() stepped back)
        t_done = t_first + rng.choice((250_000, 1_000_000, 7 * MS, rng.randrange(-MS, 500 * MS)))
        batch = [_flow(qos, t_first, t_done)] * rng.randrange(1, 4)
        view.completed(batch)
        for _ in batch:
            reference[qos].add(max(0.0, (t_done - t_first) / 1e6))
        assert all(len(d) < 64 for d in view._pending.values())   # bounded between reads
    for qos in (1, 2):
        for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0):
            assert view.quantile_ms(qos, q) == reference[qos].get_quantile_value(q)
        assert view.sketches[qos].count == reference[qos].count
        assert view.sketches[qos].sum == pytest.approx(reference[qos].sum)


def _sys_topics(c: RawClient, want: set[str], timeout: float = 5.0) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    deadline = time.monotonic() + timeout
    while not want <= got.keys() and time.monotonic() < deadline:
        m = c.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(m, Publish):
            got[m.topic.removeprefix("$SYS/broker/")] = m.payload
    return got


def test_sys_tree_on_the_wire_with_the_qos_view() -> None:
    with run_broker(engine=BrokerConfig(sys_interval=0.2)) as b:
        s = RawClient(b.port)
        s.connect("s")
        s.send(Subscribe(1, (Subscription("q/#", 2),)))
        s.recv()
        p = RawClient(b.port)
        p.connect("p")
        p.send(Publish("q/1", b"a", 1, packet_id=1))
        m = s.recv()
        assert isinstance(m, Publish)
        s.send(PubAck(m.packet_id or 0))
        assert p.recv() == PubAck(1)
        watcher = RawClient(b.port)
        watcher.connect("w")
        watcher.send(Subscribe(1, (Subscription("$SYS/broker/#", 0),)))
        want = MOSQUITTO_TOPICS | {t for t in QOS_TOPICS
                                   if "handshake" not in t or t.startswith("qos/1")}
        got = _sys_topics(watcher, want)
    assert want <= got.keys()
    assert "qos/2/handshake_ms/p50" not in got                 # no QoS 2 handshake yet
    assert got["version"].startswith(b"qosinspect ")
    assert int(got["clients/connected"]) >= 2 and int(got["messages/received"]) >= 1
    assert float(got["qos/1/handshake_ms/p50"]) > 0
    assert int(got["heap/current"]) > 1_000_000


def test_sys_is_readable_only_where_the_acl_allows_and_never_publishable(
        tmp_path: Path) -> None:
    pw = PasswordFile()
    pw.set("admin", "a")
    pw.set("bob", "b")
    acl = AccessControl.parse("user admin\ntopic read $SYS/#\nuser bob\ntopic readwrite #\n")
    auth = Authenticator(False, pw, acl)
    with run_broker(auth=auth, engine=BrokerConfig(sys_interval=0.2)) as b:
        bob = RawClient(b.port, version=5)
        ack = bob.connect("bob", username="bob", password=b"b")
        assert isinstance(ack, ConnAck) and ack.reason_code == 0
        bob.send(Subscribe(1, (Subscription("$SYS/#", 0), Subscription("#", 0))))
        suback = bob.recv()                  # "#" in the ACL does not cover "$SYS", as in
        assert isinstance(suback, SubAck)    # mosquitto [MQTT-4.7.2-1]
        assert list(suback.reason_codes) == [0x87, 0]
        bob.send(Publish("$SYS/broker/version", b"fake", 1, packet_id=1))
        assert bob.recv() == PubAck(1, 0x87)                  # nobody may fake it
        admin = RawClient(b.port)
        assert admin.connect("admin", username="admin", password=b"a") == ConnAck(False, 0)
        admin.send(Subscribe(1, (Subscription("$SYS/broker/version", 0),)))
        assert admin.recv() == SubAck(1, (0,))
        version = admin.recv()
        assert isinstance(version, Publish) and version.payload.startswith(b"qosinspect ")
        assert all(not (isinstance(m, Publish) and m.topic.startswith("$SYS"))
                   for m in [*bob.inbox, _drain(bob)])


def _drain(c: RawClient) -> object:
    try:
        return c.recv(timeout=0.5)
    except AssertionError:
        return None


def test_sys_topics_do_not_take_retained_slots_from_clients() -> None:
    e = BrokerEngine(BrokerConfig(max_retained=3))
    e.publish_sys(SysTree("test", 0).values(e, 1, None), 1)
    p = connect(e, "p")
    for i in range(3):
        e.receive(p, Publish(f"r/{i}", b"x", 0, False, True), 2)
    assert {f"r/{i}" for i in range(3)} <= set(e.retained)
    assert e.stats.retained_refused == 0
    e.receive(p, Publish("r/3", b"x", 0, False, True), 2)
    assert "r/3" not in e.retained and e.stats.retained_refused == 1

"""Persistence in SQLite: sessions, queues, in-flight flows and retained messages survive a
restart, even a SIGKILL of the broker process, so no acknowledged QoS 1/2 message is lost."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from qosinspect.broker import Listener
from qosinspect.broker.engine import NS, BrokerEngine
from qosinspect.broker.store import SqliteStore
from qosinspect.mqtt.packets import (
    ConnAck,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
)
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.tools import stop_process

from .harness import QOSINSPECT, RawClient, run_broker, wait_for
from .test_engine import connect, pubs, take


def test_store_round_trip_of_every_session_state(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    e = BrokerEngine()
    store = SqliteStore(path)
    store.load(e, 0)
    s = connect(e, "s", clean_start=False)
    e.receive(s, Subscribe(1, (Subscription("t/#", 2), Subscription("o", 1))), 0)
    take(s)
    p = connect(e, "p", version=5, clean_start=False,
                properties=Properties.of(session_expiry_interval=600))
    take(p)
    e.receive(p, Publish("t/1", b"q1", 1, packet_id=1), 1)      # to s: in flight, no PUBACK
    e.receive(p, Publish("t/2", b"q2", 2, packet_id=2), 1)      # to s: PUBREC will come
    e.receive(p, Publish("t/3", b"q2b", 2, packet_id=3), 1)     # from p: awaiting PUBREL
    e.receive(p, Publish("keep", b"r", 1, retain=True, packet_id=4,
                         properties=Properties.of(message_expiry_interval=3600)), 1)
    out = pubs(take(s))
    assert [m.payload for m in out] == [b"q1", b"q2", b"q2b"]
    e.receive(s, PubRec(out[1].packet_id or 0), 2)
    e.receive(s, PubRec(out[2].packet_id or 0), 2)
    e.receive(s, PubComp(out[2].packet_id or 0), 2)              # q2b finished
    e.receive(p, PubRel(2), 2)                                   # p's id 2 released; 3 kept
    take(s)
    e.connection_lost(s, 3)
    e.receive(p, Publish("t/4", b"offline", 1, packet_id=5), 3)  # queued for s
    e.receive(p, Publish("o", b"q0", 0), 3)                      # QoS 0: not kept
    store.commit(e)
    store.close()

    e2 = BrokerEngine()
    store2 = SqliteStore(path)
    store2.load(e2, 10 * NS)
    assert set(e2.sessions) == {"s", "p"}
    assert e2.sessions["s"].subs.keys() == {"t/#", "o"}
    assert "keep" in e2.retained and e2.retained["keep"].payload == b"r"
    s2 = connect(e2, "s", clean_start=False, now=10 * NS)
    got = take(s2)
    assert got[0] == ConnAck(True, 0)
    again = got[1:]
    assert isinstance(again[0], Publish) and again[0].dup and again[0].payload == b"q1" \
        and again[0].packet_id == out[0].packet_id                     # [MQTT-4.4.0-1]
    assert again[1] == PubRel(out[1].packet_id or 0)
    assert isinstance(again[2], Publish) and again[2].payload == b"offline" and \
        not again[2].dup
    assert len(again) == 3
    p2 = connect(e2, "p", version=5, clean_start=False, now=10 * NS,
                 properties=Properties.of(session_expiry_interval=600))
    take(p2)
    e2.receive(p2, Publish("t/3", b"q2b", 2, dup=True, packet_id=3), 11 * NS)
    assert take(p2) == [PubRec(3)]                                # stored id: not again
    assert pubs(take(s2)) == []                                   # [MQTT-4.3.3-10]
    e2.receive(s2, PubAck(out[0].packet_id or 0), 12 * NS)
    store2.commit(e2)
    store2.close()
    e3 = BrokerEngine()
    store3 = SqliteStore(path)
    store3.load(e3, 20 * NS)
    state = e3.sessions["s"].state
    assert [f.publish.payload for f in state.sender.in_flight.values()] == [b"q2", b"offline"]
    store3.close()


def test_clean_sessions_are_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    e = BrokerEngine()
    store = SqliteStore(path)
    store.load(e, 0)
    c = connect(e, "brief")                                       # clean session: not stored
    e.receive(c, Subscribe(1, (Subscription("x", 1),)), 0)
    v5 = connect(e, "v5", version=5)                              # expiry 0: not stored
    take(v5)
    store.commit(e)
    rows = store.db.execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert rows == 0
    store.close()


def test_broker_restart_keeps_sessions_and_retained(tmp_path: Path) -> None:
    db = str(tmp_path / "broker.db")
    with run_broker(persistence=db) as b:
        s = RawClient(b.port)
        s.connect("durable", clean_start=False)
        s.send(Subscribe(1, (Subscription("d/#", 2),)))
        s.recv()
        s.close()
        wait_for(lambda: b.call(lambda: b.server.engine.sessions["durable"].conn is None),
                 what="the subscriber gone")
        p = RawClient(b.port)
        p.connect("pub")
        for i in range(1, 6):
            p.send(Publish("d/x", str(i).encode(), 1 + i % 2, packet_id=i, retain=i == 5))
        acks = p.recv_n(5)
        assert {type(a) for a in acks} == {PubAck, PubRec}
        p.close()
    with run_broker(persistence=db) as b:
        s = RawClient(b.port)
        ack = s.connect("durable", clean_start=False)
        assert isinstance(ack, ConnAck) and ack.session_present
        got = [s.recv() for _ in range(5)]
        assert [m.payload for m in got if isinstance(m, Publish)] == \
            [str(i).encode() for i in range(1, 6)]
        r = RawClient(b.port)
        r.connect("late")
        r.send(Subscribe(1, (Subscription("d/#", 0),)))
        r.recv()
        retained = r.recv()
        assert isinstance(retained, Publish) and retained.retain and retained.payload == b"5"


@pytest.mark.slow
def test_sigkill_of_the_broker_loses_no_acknowledged_message(tmp_path: Path) -> None:
    """The CLI broker with --persistence is killed with SIGKILL after acknowledging QoS 1/2
    messages; the restarted broker delivers every one of them."""
    db = str(tmp_path / "broker.db")

    def start() -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen(
            [QOSINSPECT, "broker", "--port", "0",
             "--allow-anonymous", "--persistence", db],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "ready" in line, line
        return proc, int(line.rsplit(":", 1)[1].split()[0])

    proc, port = start()
    try:
        s = RawClient(port)
        s.connect("durable", clean_start=False)
        s.send(Subscribe(1, (Subscription("k/#", 2),)))
        s.recv()
        s.close()
        p = RawClient(port)
        p.connect("pub")
        n = 200
        for i in range(1, n + 1):
            p.send(Publish("k/x", str(i).encode(), 1 + i % 2, packet_id=i))
        acked = p.recv_n(n)                       # every one acknowledged (PUBACK / PUBREC)
        assert len({a.packet_id for a in acked}) == n  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]
        proc, port = start()
        s = RawClient(port)
        ack = s.connect("durable", clean_start=False)
        assert isinstance(ack, ConnAck) and ack.session_present
        seen: list[int] = []
        while len(seen) < n:
            m = s.recv()
            if isinstance(m, PubRel):
                s.send(PubComp(m.packet_id))
                continue
            assert isinstance(m, Publish)
            seen.append(int(m.payload))
            s.send(PubAck(m.packet_id or 0) if m.qos == 1 else PubRec(m.packet_id or 0))
        assert sorted(seen) == list(range(1, n + 1))
    finally:
        stop_process(proc)


def test_persistence_on_every_listener_kind_is_independent(tmp_path: Path) -> None:
    """The store is per broker, not per listener: two listeners share sessions."""
    db = str(tmp_path / "broker.db")
    with run_broker(persistence=db, listeners=[Listener("127.0.0.1", 0),
                                               Listener("127.0.0.1", 0)]) as b:
        (_, p1), (_, p2) = b.addresses
        a = RawClient(p1)
        a.connect("roamer", clean_start=False)
        a.send(Subscribe(1, (Subscription("r", 1),)))
        a.recv()
        a.close()
        c = RawClient(p2)
        ack = c.connect("roamer", clean_start=False, properties=Properties())
        assert isinstance(ack, ConnAck) and ack.session_present


def test_expired_and_cleaned_sessions_leave_the_store(tmp_path: Path) -> None:
    e = BrokerEngine()
    store = SqliteStore(tmp_path / "b.db")
    store.load(e, 0)
    c = connect(e, "brief", version=5, properties=Properties.of(session_expiry_interval=1))
    e.receive(c, Subscribe(1, (Subscription("x", 1),)), 0)
    e.connection_lost(c, 0)
    keep = connect(e, "keep", clean_start=False)
    e.receive(keep, Subscribe(1, (Subscription("y", 1),)), 0)
    store.commit(e)
    count = "SELECT count(*) FROM sessions"
    assert store.db.execute(count).fetchone()[0] == 2
    e.tick(2 * NS)                                            # "brief" expired
    connect(e, "keep", clean_start=True, now=2 * NS)          # clean start: "keep" discarded
    store.commit(e)
    assert store.db.execute(count).fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM subscriptions").fetchone()[0] == 0
    store.close()

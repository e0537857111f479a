"""Issue 12, point 5: backpressure per subscriber. A subscriber that does not read never pauses
the publishers of the others, however often it reconnects; its own bounded queue (messages and
bytes) gets the stated policy when full (disconnect, or drop the oldest, counted); a subscriber
that reads still pauses publishers rather than lose anything (fan-in, see test_noloss.py).

The engine tests drive time explicitly; the wire test runs the issue's scenario on sockets."""

from __future__ import annotations

import threading

import pytest

from qosinspect.broker import BrokerConfig
from qosinspect.broker.config import build
from qosinspect.broker.engine import NS, BrokerEngine
from qosinspect.errors import ConfigError
from qosinspect.mqtt.packets import Disconnect, PubAck, Publish, Subscribe, Subscription

from .harness import RawClient, run_broker, wait_for
from .test_engine import connect, pubs, subscribe, take


def _flood(e: BrokerEngine, p: object, n: int, now: int, start: int = 0) -> None:
    for i in range(start, start + n):
        e.receive(p, Publish("t", b"%d" % i, 1, packet_id=i % 60000 + 1), now)  # type: ignore[arg-type]


def test_a_subscriber_that_never_reads_pauses_nobody_even_when_it_reconnects() -> None:
    cfg = BrokerConfig(max_inflight=5, max_queued_messages=10, slow_subscriber_timeout=1)
    e = BrokerEngine(cfg)
    s = connect(e, "s", clean_start=False)
    subscribe(e, s, Subscription("t", 1))
    p = connect(e, "p")
    sess = e.sessions["s"]
    t = 0
    for cycle in range(3):                         # reconnects every 31 s, reads nothing
        _flood(e, p, 40, t + NS // 2, cycle * 40)  # its queue overflows 0.5 s after connecting
        assert not p.blocked_on                    # not known to read: pauses nobody
        e.tick(t + 2 * NS)                         # 2 s without any acknowledgement: slow
        assert s.closed and take(s)[-1:] != [Disconnect(0x97)]   # 3.1.1: no DISCONNECT
        assert sess.paused_publishers == 0
        t += 31 * NS
        s = connect(e, "s", clean_start=False, now=t)
    assert e.stats.slow_subscribers_closed == 3 and e.stats.publishers_paused == 0
    assert "s" in e.sessions                       # persistent: it keeps queueing offline


def test_drop_oldest_policy_keeps_the_slow_one_connected_and_counts() -> None:
    cfg = BrokerConfig(max_inflight=2, max_queued_messages=4, slow_subscriber_timeout=1,
                       queue_full_policy="drop-oldest")
    e = BrokerEngine(cfg)
    s = connect(e, "s", version=5)
    subscribe(e, s, Subscription("t", 1))
    p = connect(e, "p")
    _flood(e, p, 6, 0)                             # 2 in flight, 4 queued: full
    e.tick(2 * NS)                                 # slow now: its full queue is trimmed
    _flood(e, p, 5, 2 * NS, 6)
    state = e.sessions["s"].state
    assert not s.closed and not p.blocked_on
    assert [q.publish.payload for q in state.queue] == [b"7", b"8", b"9", b"10"]
    assert e.stats.dropped_queue_full == 5 and state.dropped == 5   # b"2".."6": counted
    assert [m.payload for m in pubs(take(s))] == [b"0", b"1"]       # in flight, untouched


def test_the_queue_is_bounded_in_bytes_too() -> None:
    cfg = BrokerConfig(max_inflight=1, max_queued_messages=1000, max_queued_bytes=1000,
                       slow_subscriber_timeout=1, queue_full_policy="drop-oldest")
    e = BrokerEngine(cfg)
    s = connect(e, "s")
    subscribe(e, s, Subscription("t", 1))
    p = connect(e, "p")
    for i in range(10):
        e.receive(p, Publish("t", bytes(299) + bytes([i]), 1, packet_id=i + 1), 2 * NS)
    state = e.sessions["s"].state
    assert state.queued_bytes < 1000 and len(state.queue) == 3   # 3 x 301 bytes fit
    assert e.stats.dropped_queue_full == 6 and not s.closed


def test_the_issue_scenario_on_the_wire() -> None:
    """1 publisher at QoS 1, 2 subscribers that read, 1 that never reads and reconnects: the
    readers get every message in order; the one that never reads paused nobody and was
    disconnected (0x97) each time its queue was full."""
    cfg = BrokerConfig(max_queued_messages=40, slow_subscriber_timeout=0.3)
    n = 1500
    with run_broker(engine=cfg, tick_interval=0.05) as b:
        fast = [RawClient(b.port, timeout=20) for _ in range(2)]
        for i, c in enumerate(fast):
            c.connect(f"fast-{i}")
            c.send(Subscribe(1, (Subscription("load", 1),)))
            c.recv()
        stop = threading.Event()
        reconnects = 0

        def never_reads() -> None:
            nonlocal reconnects
            while not stop.is_set():
                c = RawClient(b.port)
                c.connect("lazy", clean_start=False)     # its session and its queue stay
                c.send(Subscribe(1, (Subscription("load", 1),)))
                reconnects += 1
                c.closed_by_peer(timeout=0.6)            # reads nothing it could acknowledge
                c.close()

        lazy = threading.Thread(target=never_reads, daemon=True)
        lazy.start()
        wait_for(lambda: b.call(lambda: "lazy" in b.server.engine.sessions and
                                bool(b.server.engine.sessions["lazy"].subs)), 10, "lazy's sub")
        lazy_session = b.call(lambda: b.server.engine.sessions["lazy"])
        got: list[list[int]] = [[], []]

        def read(i: int) -> None:
            while len(got[i]) < n:
                m = fast[i].recv(timeout=20)
                if isinstance(m, Publish):
                    got[i].append(int(m.payload))
                    fast[i].send(PubAck(m.packet_id or 0))

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
        for r in readers:
            r.start()
        p = RawClient(b.port, timeout=20)
        p.connect("pub")
        window = 20
        for i in range(n):
            if i >= window:
                assert isinstance(p.recv(timeout=20), PubAck)    # 20 in flight at most
            p.send(Publish("load", b"%d" % i, 1, packet_id=i % 60000 + 1))
        for r in readers:
            r.join(30)
        stop.set()
        lazy.join(10)
        stats = b.call(lambda: b.server.stats)
    assert got == [list(range(n)), list(range(n))]             # the readers: all, in order
    assert lazy_session.paused_publishers == 0                 # the lazy one held nobody up
    assert stats.slow_subscribers_closed >= 1 and reconnects >= 1


def test_the_policy_options_are_checked() -> None:
    cfg, _, _ = build({"queue_full_policy": "drop-oldest", "max_queued_bytes": 4096,
                       "slow_subscriber_timeout": 2, "sys_interval": 0,
                       "outgoing_topic_aliases": 0})
    engine = cfg.engine
    assert (engine.queue_full_policy, engine.max_queued_bytes, engine.slow_subscriber_timeout,
            engine.sys_interval, engine.outgoing_topic_aliases) == ("drop-oldest", 4096, 2.0,
                                                                    0.0, 0)
    for bad in ({"queue_full_policy": "drop-newest"}, {"max_queued_bytes": 0},
                {"slow_subscriber_timeout": 0}, {"sys_interval": -1},
                {"outgoing_topic_aliases": 70000}):
        with pytest.raises(ConfigError):
            build(bad)

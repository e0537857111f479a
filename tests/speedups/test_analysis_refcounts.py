"""Reference counts stay balanced through the correlator's C loop (no leak, no premature free).

The objects the C code stores into the correlator's state or borrows from the events (the
events' timestamps, frames, packet ids, QoS and topics, the connection descriptions, the
directions, NO_TS, None/True/False) must have the same reference count once the correlator and
its result are gone, run after run, on the common path, the handed-back one and when the
iterator raises; and repeating a whole correlation must not grow memory.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from qosinspect.analysis.correlate import Correlator
from qosinspect.analysis.records import NO_TS
from qosinspect.events import Event, MqttPacketEvent
from qosinspect.mqtt.enums import Direction
from qosinspect.testing.events import EventBuilder

from ._both import require_speedups


def _traffic() -> list[Event]:
    """Steady QoS 0/1/2 traffic of a publisher and a subscriber, with re-sends, a reconnection,
    reused ids and orphan acks (handed back to Python) in between."""
    b = EventBuilder()
    sub = b.client("sub", clean_start=False)
    b.subscribe(sub, 1, ("t/#", 2))
    pub = b.client("pub", clean_start=False)
    for k in range(300):
        pid = 1 + k % 40
        b.publish(pub, "c2b", f"t/{k % 7}", b"p%d" % k, qos=k % 3, packet_id=pid if k % 3 else None)
        b.publish(sub, "b2c", f"t/{k % 7}", b"p%d" % k, qos=1, packet_id=pid)
        b.puback(sub, "c2b", pid)
        if k % 3 == 1:
            b.puback(pub, "b2c", pid)
        elif k % 3 == 2:
            b.pubrec(pub, "b2c", pid)
            b.pubrel(pub, "c2b", pid)
            b.pubcomp(pub, "b2c", pid)
        if k % 50 == 7:
            b.publish(pub, "c2b", "t/0", b"again", qos=1, packet_id=pid, dup=True)
            b.puback(pub, "b2c", 999)
            b.ping(pub)
        if k == 150:
            b.close(pub, "rst")
            pub = b.client("pub", clean_start=False, session_present=True)
    return b.events


def _run(events: list[Event], raise_at: int | None = None) -> None:
    def source() -> Iterator[Event]:
        for i, ev in enumerate(events):
            if i == raise_at:
                raise RuntimeError("the source failed")
            yield ev

    corr = Correlator(detail=False, delivery_window_ns=5 * 10**6)
    assert corr._fast is not None
    try:
        corr.consume(source())
    except RuntimeError:
        assert raise_at is not None
    result = corr.finish()
    assert result.n_events == len(events) if raise_at is None else raise_at
    del corr, result


def _watched(events: list[Event]) -> list[Any]:
    objs: list[Any] = [NO_TS, Direction.C2B, Direction.B2C, None, True, False]
    for ev in events:
        if type(ev) is MqttPacketEvent:
            # (small ints are shared by the whole interpreter: not watched)
            values = (ev.ts_ns, ev.conn, ev.frame, ev.wire_len, ev.packet, *ev.packet)
            objs.extend(x for x in values if type(x) is not int or x > 256)
    return objs


def _counts(objs: list[Any]) -> list[int]:
    gc.collect()
    return [sys.getrefcount(o) for o in objs]


@pytest.mark.parametrize("raise_at", [None, 1000], ids=["whole", "iterator_raises"])
def test_correlation_balances_references(raise_at: int | None) -> None:
    require_speedups()
    events = _traffic()
    objs = _watched(events)
    before = _counts(objs)
    _run(events, raise_at)
    after_one = _counts(objs)
    _run(events, raise_at)
    # a constant difference may come from the interpreter; one per packet would be a leak
    assert _counts(objs) == after_one
    assert after_one == before


def test_repeated_correlation_does_not_grow_memory() -> None:
    require_speedups()
    events = _traffic()
    _run(events)
    gc.collect()
    tracemalloc.start()
    try:
        _run(events)
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            _run(events)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    assert grown < 20_000, f"{grown} bytes more after 5 more runs"

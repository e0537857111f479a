"""The correlator with and without its C loop (``_speedups.correlate``, used by
``Correlator(detail=False).consume``: what ``qosinspect report`` runs): identical results.

Compared after every run: the correlator's state before ``finish()`` (counters, open exchanges
slot by slot, the delivery matcher's ring and indexes), then everything ``finish()`` returns --
connections, sessions, reconnections, anomalies (every field), the packed stores of exchanges,
QoS 0 exchanges, deliveries and TCP retransmissions byte for byte (in report mode these are what
the exchanges, deliveries and packets tables are made of; the packets store is None on both
sides), the interned values, counters and times -- and, for captures, the tables report mode can
build (connections, sessions, reconnects, anomalies, tcp_retransmissions), ``summary()``, the
errors the others raise, and the report JSON.

Inputs: every capture in captures/ (real peers and the generator's demo traffic) and in
../shared/captures, decoded once by the product's decoder; scripted sequences for the edges of
what the C code takes (the DoneIndex turning into an array, the caps, a correlator the C loop
stops running midway); and hypothesis-made event sequences that cross every hand-back boundary:
DUP re-sends, reused and unknown packet ids, reconnections in the middle of exchanges with and
without a session, gaps, both directions, QoS 0/1/2 and invalid QoS, MQTT 5 reason codes >=
0x80, packets before CONNECT or CONNACK or of unknown direction, time going backwards, every
other event type in between, subscriptions with a short delivery window, and an iterator that
raises midway.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qosinspect import _accel
from qosinspect.analysis.api import Analysis, analyze_capture
from qosinspect.analysis.correlate import CorrelationResult, Correlator
from qosinspect.analysis.state import OpenExchange
from qosinspect.capture.decoder import iter_events
from qosinspect.events import (
    CaptureStarted,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    Event,
    MqttPacketEvent,
)
from qosinspect.mqtt.enums import Direction, PubAckReason, PubCompReason, PubRecReason, PubRelReason
from qosinspect.mqtt.packets import (
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
)
from qosinspect.testing.events import Conn, EventBuilder
from qosinspect.testing.tools import PROJECT_ROOT, shared_captures

from ._both import require_speedups

CAPTURES = PROJECT_ROOT / "captures"
PORTS = {e["file"]: tuple(e["ports"])
         for e in json.loads((CAPTURES / "captures.json").read_text())}


def _captures() -> list[Path]:
    ours = sorted(CAPTURES.glob("*.pcap*"))
    shared = shared_captures()
    return ours + sorted(shared.glob("*.pcap*"))


# -- what is compared ------------------------------------------------------------------------------

def _store(store: Any) -> Any:
    """A RowStore: its rows byte for byte, and its chunks (where each starts, its size)."""
    if store is None:
        return None
    data = bytes(store.view().tobytes())  # (flushes the batch first)
    return (store.rows, store.names, data, list(store._starts), [len(b) for b in store._bufs])


def _records(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(x) for x in items]


def correlator_state(corr: Correlator) -> dict[str, Any]:
    """The correlator's state between consume() and finish(): what finish() may not show."""
    sessions = []
    for s in corr._by_code:
        opened = [(k, tuple(getattr(ex, name) for name in OpenExchange.__slots__))
                  for k, ex in s.open.items()]
        done = s.done._dict if s.done._dict is not None else list(s.done._arr or ())
        sessions.append((s.key, s.code, opened, done, s.abandoned_pending, s.intervals,
                         dataclasses.asdict(s.rec)))
    m = corr.matcher
    matcher = None if m is None else (
        m._head, m._tail, m.unmatched, dict(m._pending), dict(m._many), list(m._expect),
        [bytes(a) for a in (m._ts, m._ex, m._key, m._qos, m._pub, m._topic, m._got, m._got2)],
        m.store.rows, bytes(m.store.view().tobytes()))
    conns = {cid: (dataclasses.asdict(c.rec), c.connect_seen, c.connack_seen, c.refused,
                   c.closed, dict(c.anomaly_counts))
             for cid, c in corr._conns.items()}
    last = corr._last_conn
    return {
        "n_events": corr.n_events, "t": (corr._t_lo, corr._t_hi),
        "next_ex_id": corr.next_ex_id, "n_open_total": corr.n_open_total,
        "n_evicted": corr.n_evicted, "last": (corr._last_info, None if last is None
                                              else last.conn_id),
        "sessions": sessions, "matcher": matcher, "conns": conns,
        "exchanges": _store(corr.exchanges), "q0": _store(corr.q0),
        "anomalies": _records(corr.anomalies), "suppressed": dict(corr.suppressed),
    }


def result_state(r: CorrelationResult) -> dict[str, Any]:
    """Everything finish() returned."""
    return {
        "connections": _records(r.connections), "sessions": _records(r.sessions),
        "reconnects": _records(r.reconnects), "anomalies": _records(r.anomalies),
        "exchanges": _store(r.exchanges), "q0": _store(r.q0), "packets": _store(r.packets),
        "deliveries": _store(r.deliveries), "tcp": _store(r.tcp_retransmissions),
        "topics": list(r.topics.values), "session_keys": r.session_keys,
        "client_ids": r.client_ids, "t": (r.t_first, r.t_last), "n_events": r.n_events,
        "n_evicted": r.n_evicted, "suppressed": r.anomalies_suppressed, "detail": r.detail,
    }


def run(events: Iterable[Event], accelerated: bool, **options: Any) -> dict[str, Any]:
    """Correlate in report mode (C loop on or off); the states before and after finish(), and
    the exception consume() raised, if any."""
    options.setdefault("detail", False)
    if accelerated:
        corr = Correlator(**options)
    else:
        with _accel.pure():
            corr = Correlator(**options)
    assert (corr._fast is not None) == (accelerated and not options["detail"])
    error = None
    try:
        corr.consume(events)
    except Exception as exc:  # the iterator's own error, re-raised after what came before
        error = (type(exc).__name__, str(exc))
    before = correlator_state(corr)
    return {"error": error, "before": before, "after": result_state(corr.finish())}


def assert_same(events_of: Any, **options: Any) -> dict[str, Any]:
    """Run both paths on a fresh iterator each from ``events_of()``; they must agree."""
    pure = run(events_of(), False, **options)
    fast = run(events_of(), True, **options)
    assert fast["error"] == pure["error"]
    for key in pure["before"]:
        assert fast["before"][key] == pure["before"][key], key
    for key in pure["after"]:
        assert fast["after"][key] == pure["after"][key], key
    return fast


def frames(a: Analysis) -> dict[str, Any]:
    """The tables a report-mode analysis builds, summary() and report(); for the others the
    error they raise."""
    out: dict[str, Any] = {}
    for name in ("packets", "connections", "sessions", "exchanges", "reconnects", "deliveries",
                 "anomalies", "tcp_retransmissions"):
        try:
            out[name] = getattr(a, name)
        except ValueError as exc:
            out[name] = str(exc)
    out["summary"] = a.summary()
    out["report"] = json.dumps(a.report(), sort_keys=True)
    return out


def assert_same_frames(pure: Analysis, fast: Analysis) -> None:
    p, f = frames(pure), frames(fast)
    for name, value in p.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(f[name], value, check_exact=True, obj=name)
        else:
            assert f[name] == value, name


# -- captures --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_every_capture_gives_the_same_analysis(path: Path) -> None:
    require_speedups()
    ports = PORTS.get(path.name, (1883,))
    events = list(iter_events(path, ports=ports))
    fast = assert_same(lambda: iter(events))
    # CaptureStarted (time 0) sets the clock but is not an analysed event
    assert fast["after"]["n_events"] == len([e for e in events if type(e) is not CaptureStarted])

    def analysis(accelerated: bool) -> Analysis:
        if accelerated:
            return analyze_capture(path, ports=ports, detail=False)
        with _accel.pure():
            return analyze_capture(path, ports=ports, detail=False)

    assert_same_frames(analysis(False), analysis(True))


def test_the_c_loop_takes_the_steady_traffic() -> None:
    """On a steady capture the C loop takes most packets itself: few reach Correlator._packet
    (this fails if the fast path silently hands everything back)."""
    require_speedups()
    events = list(iter_events(CAPTURES / "gen-qos2.pcap", ports=PORTS["gen-qos2.pcap"]))
    corr = Correlator(detail=False)
    handed: list[MqttPacketEvent] = []
    packet = corr._packet

    def spy(ev: MqttPacketEvent) -> None:
        handed.append(ev)
        packet(ev)

    corr._packet = spy  # type: ignore[method-assign]
    corr.consume(events)
    n_packets = sum(1 for ev in events if type(ev) is MqttPacketEvent)
    assert n_packets > 100
    assert len(handed) < n_packets // 10
    assert {type(ev.packet).__name__ for ev in handed} <= {
        "Connect", "ConnAck", "Subscribe", "SubAck", "Disconnect", "Unsubscribe", "UnsubAck"}


# -- scripted edges ----------------------------------------------------------------------------

def test_done_index_turning_into_an_array_midway() -> None:
    """Past DoneIndex.DICT_LIMIT finished ids per session the index becomes an array (Python's
    switch, then C writes into the array); late acks and DUP re-sends then find rows there."""
    require_speedups()
    b = EventBuilder(step_ns=1000)
    c = b.client("busy", clean_start=False)
    for pid in range(1, 6001):
        b.qos1(c, "c2b", "t", pid.to_bytes(2, "big"), pid, ack_ms=0.001)
    for pid in range(1, 50):  # a DUP re-send of finished ones, and late acks
        b.publish(c, "c2b", "t", pid.to_bytes(2, "big"), qos=1, packet_id=pid, dup=True)
        b.puback(c, "b2c", pid)
    fast = assert_same(lambda: iter(b.events))
    done = fast["before"]["sessions"][0][3]
    assert isinstance(done, list)  # the array


@pytest.mark.parametrize("options", [
    {"max_open_per_session": 3}, {"max_open_total": 2}, {"max_anomalies_per_kind": 1},
    {"deliveries": False}, {"delivery_window_ns": 1}, {"detail": True},
], ids=str)
def test_caps_and_options(options: dict[str, Any]) -> None:
    require_speedups()
    b = EventBuilder()
    sub = b.client("sub", clean_start=False)
    b.subscribe(sub, 1, ("t/#", 2))
    pub = b.client("pub")
    for pid in range(1, 9):
        b.publish(pub, "c2b", "t/1", b"m%d" % pid, qos=pid % 3, packet_id=pid if pid % 3 else None)
        b.publish(sub, "b2c", "t/1", b"m%d" % pid, qos=1, packet_id=pid)
        b.publish(pub, "c2b", "t/1", b"x", qos=1, packet_id=pid, dup=True)
    for pid in range(1, 9):
        b.puback(pub, "b2c", pid)
        b.puback(sub, "c2b", pid)
        b.pubrec(pub, "b2c", pid)
    assert_same(lambda: iter(b.events), **options)


@pytest.mark.parametrize("window_ms", [2, 5, 1000])
def test_matcher_with_many_subscribers_and_repeated_content(window_ms: int) -> None:
    """Publications of the same content pending together (the matcher's list of them), four
    subscribers (the ring's two slots and _many), duplicates, copies that never come from
    subscribers connected, leaving and offline, no_local; settled as the window passes."""
    require_speedups()
    b = EventBuilder()
    subs = [b.client(f"s{k}", clean_start=False) for k in range(4)]
    for k, s in enumerate(subs):
        b.subscribe(s, 1, ("t/#", k % 3), no_local=k == 0)
    pub = subs[0]
    for round_ in range(6):
        for _ in range(3):
            b.publish(pub, "c2b", "t/x", b"same", qos=round_ % 3,
                      packet_id=round_ + 1 if round_ % 3 else None)
        for k, s in enumerate(subs[: 1 + round_ % 4]):
            for copy in range(1 + (k + round_) % 3):
                b.publish(s, "b2c", "t/x", b"same", qos=k % 2,
                          packet_id=100 + 10 * round_ + copy if k % 2 else None)
        if round_ == 3:
            b.close(subs[3], "fin")
        b.advance(window_ms / 1000 * (round_ % 3))
        b.publish(pub, "c2b", "t/y", b"other %d" % round_)
    assert_same(lambda: iter(b.events), delivery_window_ns=window_ms * 10**6)


def test_a_correlator_the_c_loop_cannot_run_midway() -> None:
    """When a Python step leaves the correlator in a state the C loop does not take (here a
    cap beyond 64 bits), it stops and the Python loop takes the rest of the iterator."""
    require_speedups()
    b = EventBuilder()
    c = b.client("a")
    for pid in range(1, 20):
        b.qos1(c, "c2b", "t", b"x", pid)

    def events_of(corr_box: list[Correlator]) -> Iterator[Event]:
        for i, ev in enumerate(b.events):
            if i == 12:
                corr_box[0].max_open_total = 2**70
                yield ConnectionOpened(ev.ts_ns, ConnectionInfo(
                    99, Endpoint("10.9.9.9", 1), Endpoint("10.0.0.1", 1883)), 0, False)
            yield ev

    out = []
    for accelerated in (False, True):
        box: list[Correlator] = []
        if accelerated:
            corr = Correlator(detail=False)
        else:
            with _accel.pure():
                corr = Correlator(detail=False)
        box.append(corr)
        corr.consume(events_of(box))
        out.append((correlator_state(corr), result_state(corr.finish())))
    assert out[0] == out[1]


# -- hypothesis ----------------------------------------------------------------------------------

DIRS = ("c2b", "b2c")
CLIENTS = ("a", "b", "")
REASONS = (0, 0x10, 0x80, 0x87, 0x92)
_REASON_ENUMS: dict[type, Any] = {PubAck: PubAckReason, PubRec: PubRecReason,
                                  PubRel: PubRelReason, PubComp: PubCompReason}
_ACK_TYPES: dict[str, Any] = {"puback": PubAck, "pubrec": PubRec, "pubrel": PubRel,
                              "pubcomp": PubComp}

who = st.integers(0, len(CLIENTS) - 1)
_deliver = st.tuples(st.just("deliver"), st.sampled_from(["t/1", "t/2"]),
                     st.sampled_from([b"a", b"b"]), st.integers(0, 2), st.integers(0, 2),
                     st.integers(1, 3), st.booleans(), st.booleans())
_exchange = st.tuples(st.just("exchange"), who, st.sampled_from(DIRS), st.integers(1, 2),
                      st.integers(1, 3), st.sampled_from(REASONS), st.integers(1, 4),
                      st.none() | st.integers(1, 3), st.booleans(), st.booleans(),
                      st.sampled_from([None, "dup", "pubrel", "acks"]), st.booleans())
action = st.one_of(
    _deliver, _deliver, _exchange, _exchange, _exchange,
    st.tuples(st.just("publish"), who, st.sampled_from(DIRS), st.sampled_from([0, 1, 1, 2, 2, 3]),
              st.integers(0, 3), st.sampled_from(["t/1", "t/2"]), st.sampled_from([b"a", b"b"]),
              st.booleans(), st.booleans()),
    st.tuples(st.just("ack"), who, st.sampled_from(list(_ACK_TYPES)), st.sampled_from(DIRS),
              st.integers(0, 3), st.sampled_from(REASONS), st.booleans()),
    st.tuples(st.just("connect"), who, st.sampled_from([4, 5]), st.booleans(),
              st.sampled_from([None, 0, 60]), st.sampled_from([0, 0, 0, 0x87]), st.booleans(),
              st.booleans()),
    st.tuples(st.just("midstream"), who, st.sampled_from([None, 4, 5])),
    st.tuples(st.just("ping"), who, st.sampled_from(DIRS)),
    st.tuples(st.just("subscribe"), who, st.sampled_from(["t/#", "t/1", "$share/g/t/1"]),
              st.integers(0, 2), st.booleans()),
    st.tuples(st.just("disconnect"), who, st.sampled_from(DIRS), st.sampled_from([0, 0x8E])),
    st.tuples(st.just("close"), who, st.sampled_from(["fin", "rst", "idle"])),
    st.tuples(st.just("gap"), who, st.sampled_from(DIRS)),
    st.tuples(st.just("tcp"), who, st.sampled_from(DIRS)),
    st.tuples(st.just("anomaly"), who, st.sampled_from(["malformed", "stream_gap", "websocket"])),
    st.tuples(st.just("nodir"), who, st.sampled_from(["publish", "puback", "ping"])),
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 5, 200, 100_000])),
    st.tuples(st.just("back"), st.integers(1, 50)),
)


def _reason(cls: type, code: int, as_enum: bool) -> int:
    """The reason code as an int, or (like the decoder) as its packet type's IntEnum."""
    if as_enum:
        try:
            reason: int = _REASON_ENUMS[cls](code)
            return reason
        except ValueError:
            pass
    return code


def play(actions: list[tuple[Any, ...]]) -> list[Event]:
    """Events of a small world of three clients (one with an empty client id), each with at most
    one current connection; "a" (persistent) and "b" (subscribed to everything) start
    connected."""
    b = EventBuilder(step_ns=1_000_000)
    conns: dict[int, Conn] = {0: b.client("a", clean_start=False),
                              1: b.client("b", clean_start=False)}
    b.subscribe(conns[1], 1, ("t/#", 2))
    for act in actions:
        kind = act[0]
        if kind == "wait":
            b.advance(act[1] / 1000)
            continue
        if kind == "back":
            b.now -= act[1] * 1_000_000
            continue
        if kind == "deliver":  # "a" publishes, "b" gets copies (new ids: none, one or a duplicate)
            _, topic, payload, pub_qos, sub_qos, pid, retain, early = act
            if 0 in conns and 1 in conns:
                b.publish(conns[0], "c2b", topic, payload, qos=pub_qos,
                          packet_id=pid if pub_qos else None)
                if early:  # the copy stamped before the publication (clocks of two interfaces)
                    b.now -= 3_000_000
                for copy in range(pid - 1):
                    b.publish(conns[1], "b2c", topic, payload, qos=sub_qos,
                              packet_id=pid + copy if sub_qos else None,
                              retain=bool(retain and copy))
            continue
        i = act[1]
        c = conns.get(i)
        if kind == "connect":
            _, _, version, clean, expiry, code, present, connack = act
            c = b.open(version=version)
            conns[i] = c
            b.connect(c, CLIENTS[i], clean_start=clean,
                      session_expiry=expiry if version == 5 else None)
            if connack:
                b.connack(c, session_present=present, code=code)
            continue
        if kind == "midstream":  # a capture started mid-session: no CONNECT, version unknown
            c = b.open(handshake_seen=False)
            conns[i] = Conn(c.info, act[2] or 4)
            for version in (act[2], None, 4):
                ts = b._tick(None, None)
                b.events.append(MqttPacketEvent(ts, c.info, Direction.C2B, PingReq(), 2,
                                                b.frame, b.frame, version))
            continue
        if c is None:
            continue
        if kind == "publish":
            _, _, d, qos, pid, topic, payload, dup, retain = act
            b.publish(c, d, topic, payload, qos=qos, packet_id=pid if qos else None, dup=dup,
                      retain=retain)
        elif kind == "ack":
            _, _, name, d, pid, code, as_enum = act
            cls = _ACK_TYPES[name]
            b.send(c, d, cls(pid, _reason(cls, code, as_enum)))
        elif kind == "exchange":
            # a flow up to some step, the last ack with a reason code, maybe a reconnection
            # (session kept or not) before one of the steps
            _, _, d, qos, pid, code, stop, reconnect_at, present, swap, then, move = act
            back = "b2c" if d == "c2b" else "c2b"
            steps = [("puback", back)] if qos == 1 else [
                ("pubrec", back), ("pubrel", d), ("pubcomp", back)]
            if swap:  # PUBREL before PUBREC, or PUBACK then PUBREC (wrong ack type)
                steps = [steps[1], steps[0], *steps[2:]] if qos == 2 else [*steps, ("pubrec", back)]
            b.publish(c, d, "t/1", b"a", qos=qos, packet_id=pid)
            steps = steps[:stop]
            for k, (name, to) in enumerate(steps):
                if reconnect_at == k and CLIENTS[i]:
                    b.close(c, "rst")
                    c = conns[i] = b.client(CLIENTS[i], clean_start=False,
                                            session_present=present)
                cls = _ACK_TYPES[name]
                b.send(c, to, cls(pid, _reason(cls, code if k == len(steps) - 1 else 0, True)))
            if then is not None:
                # what mosquitto does after a reconnection: the PUBLISH again with DUP=1 and its
                # first ack, the PUBREL again and its PUBCOMP, or the acks again
                if move and CLIENTS[i]:
                    b.close(c, "fin")
                    c = conns[i] = b.client(CLIENTS[i], clean_start=False, session_present=True)
                if then == "dup":
                    b.publish(c, d, "t/1", b"a", qos=qos, packet_id=pid, dup=True)
                    steps = steps[:1]
                elif then == "pubrel":
                    steps = [step for step in steps if step[0] in ("pubrel", "pubcomp")]
                for name, to in steps:
                    b.send(c, to, _ACK_TYPES[name](pid))
        elif kind == "ping":
            b.send(c, act[2], PingReq() if act[2] == "c2b" else PingResp())
        elif kind == "subscribe":
            _, _, topic_filter, qos, no_local = act
            b.send(c, "c2b", Subscribe(7, (Subscription(topic_filter, qos, no_local),)))
            b.send(c, "b2c", SubAck(7, (qos,)))
        elif kind == "disconnect":
            b.send(c, act[2], Disconnect(act[3]))
        elif kind == "close":
            b.close(c, act[2])
            del conns[i]
        elif kind == "gap":
            b.gap(c, act[2], 10)
        elif kind == "tcp":
            b.tcp_retransmission(c, act[2], 100)
        elif kind == "anomaly":
            b.anomaly(c, "c2b", act[2])
        elif kind == "nodir":
            packet: Any = {"publish": Publish("t/1", b"a", 1, False, False, 1), "puback": PubAck(1),
                      "ping": PingReq()}[act[2]]
            ts = b._tick(None, None)
            b.events.append(MqttPacketEvent(ts, c.info, None, packet, 4, b.frame, b.frame,
                                            c.version))
    return b.events


def _raising(events: list[Event], at: int | None, opened: bool) -> Iterator[Event]:
    """The events (without ConnectionOpened unless ``opened``), raising at index ``at``."""
    if not opened:
        events = [ev for ev in events if type(ev) is not ConnectionOpened]
    for i, ev in enumerate(events):
        if i == at:
            raise RuntimeError(f"the source failed at event {i}")
        yield ev


#: Redelivery after a reconnection as mosquitto does it: a PUBREL again for a finished QoS 2
#: exchange, a PUBLISH again with DUP=1 after its PUBACK, each on the next connection.
REDELIVERY = [[("exchange", 0, "c2b", 2, 1, 0, 4, None, False, False, "pubrel", True)],
              [("deliver", "t/1", b"a", 1, 1, 3, False, False),
               ("exchange", 1, "b2c", 1, 2, 0, 1, None, False, False, "dup", True)]]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(REDELIVERY[0], None, True, {"delivery_window_ns": 10**9})
@example(REDELIVERY[1], None, True, {"delivery_window_ns": 10**9})
@given(st.lists(action, max_size=80), st.none() | st.integers(0, 80), st.booleans(),
       st.fixed_dictionaries({
           "delivery_window_ns": st.sampled_from([1, 3_000_000, 10**9, 60 * 10**9])}, optional={
           "max_open_per_session": st.integers(1, 4), "max_open_total": st.integers(1, 6),
           "max_anomalies_per_kind": st.integers(1, 3), "deliveries": st.booleans()}))
def test_any_event_sequence_gives_the_same_analysis(actions: list[tuple[Any, ...]],
                                                    raise_at: int | None, opened: bool,
                                                    options: dict[str, Any]) -> None:
    require_speedups()
    events = play(actions)
    assert_same(lambda: _raising(events, raise_at, opened), **options)

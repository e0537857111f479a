"""Property tests: any event sequence, however wrong, gives consistent records and no crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.analysis.correlate import Correlator
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.analysis.records import NO_TS
from qosinspect.events import MqttPacketEvent
from qosinspect.testing.events import Conn, EventBuilder

DIRS = ("c2b", "b2c")

action = st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(DIRS), st.integers(0, 3), st.integers(1, 3),
              st.sampled_from([b"a", b"b"]), st.booleans()),
    st.tuples(st.sampled_from(["puback", "pubrec", "pubrel", "pubcomp"]),
              st.sampled_from(DIRS), st.integers(1, 3), st.sampled_from([0, 0, 0x80])),
    st.tuples(st.just("reconnect"), st.booleans(), st.booleans()),
    st.tuples(st.just("close"), st.sampled_from(["fin", "rst"])),
    st.tuples(st.just("gap"), st.sampled_from(DIRS)),
    st.tuples(st.just("wait"), st.integers(0, 200)),
)


def _play(actions: list[tuple[object, ...]]) -> EventBuilder:
    b = EventBuilder()
    c: Conn | None = b.client("dev", clean_start=False)
    for act in actions:
        kind = act[0]
        if kind == "reconnect":
            c = b.client("dev", clean_start=bool(act[1]), session_present=bool(act[2]))
            continue
        if kind == "wait":
            b.advance(int(act[1]))  # type: ignore[call-overload]
            continue
        if c is None:
            continue
        if kind == "publish":
            _, d, qos, pid, payload, dup = act
            b.publish(c, str(d), "t", payload, qos=int(qos),  # type: ignore[arg-type,call-overload]
                      packet_id=int(pid) if qos else None,  # type: ignore[call-overload]
                      dup=bool(dup))
        elif kind == "close":
            b.close(c, str(act[1]))
            c = None
        elif kind == "gap":
            b.gap(c, str(act[1]), 10)
        else:
            _, d, pid, reason = act
            getattr(b, str(kind))(c, d, pid, reason)
    return b


@settings(max_examples=150, deadline=None)
@given(st.lists(action, max_size=40), st.integers(1, 4))
def test_records_are_consistent(actions: list[tuple[object, ...]], cap: int) -> None:
    b = _play(actions)
    corr = Correlator(AnalysisOptions(max_open_per_session=cap))
    r = corr.feed_all(b.events)
    assert corr.n_open_total == 0
    exs = r.exchange_objects()
    assert [e.ex_id for e in exs] == list(range(len(exs)))
    assert r.packets is not None
    assert r.packets.rows == sum(1 for ev in b.events if type(ev) is MqttPacketEvent)
    for e in exs:
        assert e.outcome != "open"
        assert e.n_publish >= 1 and 0 <= e.n_dup <= e.n_publish
        for step in ("publish", "puback", "pubrec", "pubrel", "pubcomp"):
            first, last = getattr(e, f"t_{step}"), getattr(e, f"t_{step}_last")
            assert (first is None) == (last is None)
            if first is not None:
                assert first <= last
        if e.qos == 0:
            assert e.outcome == "complete" and e.packet_id is None
        if e.outcome in ("complete", "complete_after_reconnect"):
            assert e.t_end is not None and e.t_end >= e.t_publish  # type: ignore[operator]
            assert e.last_step == ("puback" if e.qos == 1 else "pubcomp") or e.qos == 0
        if e.outcome == "open_at_end":
            assert e.t_end is None
    after = sum(1 for e in exs if e.outcome == "complete_after_reconnect")
    assert sum(rc.resumed for rc in r.reconnects) <= after
    for rc in r.reconnects:
        assert rc.gap_ns is None or rc.gap_ns >= 0
    assert all(a.ts_ns != NO_TS for a in r.anomalies)


@settings(max_examples=60, deadline=None)
@given(st.lists(action, max_size=40))
def test_report_mode_gives_the_same_report(actions: list[tuple[object, ...]]) -> None:
    """``detail=False`` (narrow rows, what ``qosinspect report`` uses) changes no figure."""
    import qosinspect

    b = _play(actions)
    full = qosinspect.analyze(b.events).report()
    narrow = qosinspect.analyze(b.events, AnalysisOptions(detail=False)).report()
    assert narrow == full


@settings(max_examples=30, deadline=None)
@given(st.lists(action, max_size=30))
def test_tables_keep_their_schema_on_any_sequence(actions: list[tuple[object, ...]]) -> None:
    import qosinspect
    from qosinspect.analysis.api import TABLES
    from qosinspect.analysis.tables import SCHEMAS

    a = qosinspect.analyze(_play(actions).events)
    for name in TABLES:
        df = getattr(a, name)
        assert [(c, str(t)) for c, t in df.dtypes.items()] == [
            (c, d) for c, d, _ in SCHEMAS[name]], name
    ex = a.exchanges
    assert len(ex) == len(a.result.exchange_objects())
    assert list(ex["generation"]) == [e.generation for e in a.result.exchange_objects()]

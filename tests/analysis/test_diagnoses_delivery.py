"""Issue 16's delivery-level checks (:mod:`qosinspect.analysis.diagnoses.delivery`) on scripted
facts: where each threshold lies, so that a change to one fails here before a generator run
(tests/traffic/test_diagnoses_delivery_runs.py) has to find it."""

from __future__ import annotations

from array import array

from qosinspect.analysis.diagnoses.delivery import (
    PACED_MIN,
    DeliveryChecks,
    Held,
    Lost,
    after_ack,
    conn_at,
    offline_gap,
)
from qosinspect.analysis.diagnoses.facts import ConnFacts, ZeroWindow
from qosinspect.analysis.records import NO_TS

MS = 1_000_000


def _held(ex_id: int, *, wait: int = 50 * MS, after_ack: int = MS // 5, n_open: int = 2,
          limit: int = 0, session: int = 1, offline: bool = False,
          present: bool = False) -> Held:
    pub = 1000 * MS * ex_id
    ts = pub + wait
    return Held(ex_id, 7, session, pub, ts, offline, pub - 500 * MS if offline else 0,
                pub + 100 * MS if offline else 0, present, 42, n_open, limit,
                ts - after_ack, 99)


def _add(checks: DeliveryChecks, h: Held) -> None:
    """As the diagnoser takes a late copy to a connected subscriber: counted, and kept when
    it left right after an acknowledgement."""
    checks.late[h.session] += 1
    if after_ack(h.pub_ts, h.ts, h.ack_ts):
        checks.add_held(h)


def _causes(checks: DeliveryChecks) -> dict[int, str]:
    return {d.ref: d.cause for d in checks.finish({})}


def test_a_receive_maximum_names_copies_only_at_the_limit() -> None:
    checks = DeliveryChecks(100)
    _add(checks, _held(1, n_open=3, limit=3))
    _add(checks, _held(2, n_open=2, limit=3))                    # a slot was free
    _add(checks, _held(3, n_open=3, limit=3, after_ack=6 * MS))  # not right after the ack
    assert _causes(checks) == {1: "receive_maximum"}
    (d,) = checks.finish({})
    assert "Receive Maximum of 3" in d.sentence and "frame 99" in d.sentence
    assert d.frames == (99,) and d.latency_ns == 50 * MS


def test_an_unannounced_limit_needs_late_copies_paced_by_acknowledgements() -> None:
    few = DeliveryChecks(100)
    for i in range(PACED_MIN - 1):
        _add(few, _held(i))
    assert _causes(few) == {}                                    # too few to tell
    paced = DeliveryChecks(100)
    for i in range(PACED_MIN):
        _add(paced, _held(i))
    assert set(_causes(paced).values()) == {"receive_maximum"}
    mixed = DeliveryChecks(100)
    for i in range(PACED_MIN):
        _add(mixed, _held(i))
    for i in range(PACED_MIN, 4 * PACED_MIN):                   # most late for another reason
        _add(mixed, _held(i, after_ack=40 * MS))
    assert _causes(mixed) == {}
    other = DeliveryChecks(100)                                  # paced per session
    for i in range(PACED_MIN):
        _add(other, _held(i, session=i))
    assert _causes(other) == {}


def test_a_copy_queued_while_offline_is_an_offline_flush() -> None:
    checks = DeliveryChecks(100)
    checks.add_held(_held(1, offline=True, present=True, wait=300 * MS))
    checks.add_held(_held(2, offline=True, present=True, wait=300 * MS))
    checks.add_held(_held(3, offline=True, present=False, wait=300 * MS))   # a new session
    found = checks.finish({})
    assert {d.ref: d.cause for d in found} == {1: "offline_queue_flush",
                                              2: "offline_queue_flush"}
    assert "a gap of 600.0 ms" in found[0].sentence
    assert "2 queued messages were flushed" in found[0].sentence
    assert found[0].frames == (42,)


def test_every_copy_never_delivered_gets_a_cause() -> None:
    checks = DeliveryChecks(100)
    for ref, reason in enumerate((2, 3, 1, 1)):
        checks.add_lost(Lost(ref, 10 + ref, 0, 1, 5 if ref == 2 else 6, 100 * MS, reason), {})
    window = ConnFacts("10.0.0.1:1")
    window.windows = (ZeroWindow(0, 90 * MS, 17, 120 * MS, 18),)
    found = checks.finish({5: window})
    assert [d.cause for d in found] == ["subscriber_offline", "connection_lost", "zero_window",
                                        "no_known_cause"]
    assert all(d.subject == "delivery" for d in found)
    assert found[2].frames == (17, 18)
    assert checks.n_lost == 4


def test_the_caps_count_what_they_leave_out() -> None:
    checks = DeliveryChecks(2)
    for i in range(3):
        checks.add_held(_held(i))
        checks.add_lost(Lost(i, i, 0, 1, 1, 0, 2), {})
    assert len(checks.held) == len(checks.lost) == 2
    # a held copy past the cap is counted under its verdict's key (it is the key's example);
    # so is a lost one, under its cause, named as it comes
    (over,) = checks.over.values()
    assert over.n == 0 and [h.ex_id for h in over.worst] == [2] and not over.ids
    (lost_over,) = checks.lost_over.values()
    worst = lost_over.worst
    assert lost_over.n == 0 and [d.ref for d in worst] == [2]
    assert worst[0].cause == "subscriber_offline"
    assert checks.dropped == 0 and checks.n_lost == 3


def test_lost_copies_past_the_cap_are_counted_as_if_kept() -> None:
    """Copies never delivered past the cap are named as they come and counted under their
    cause, the earliest kept as examples: the report's counts and examples are those of
    keeping every one (caps 100,000, 5 and 0)."""
    from qosinspect.analysis.diagnoses.core import DiagnosisResult
    from qosinspect.analysis.diagnoses.report import diagnoses_report

    window = ConnFacts("10.0.0.1:1")
    window.windows = (ZeroWindow(0, 90 * MS, 17, 120 * MS, 18),)
    conns = {5: window}
    lost = [Lost(i, 100 + i, 0, 1, 5 if i % 3 else 6, (80 + i % 50) * MS, (1, 2, 3)[i % 4 % 3])
            for i in range(40)]
    reports = []
    for cap in (100_000, 5, 0):
        checks = DeliveryChecks(cap)
        for x in lost:
            checks.add_lost(x, conns)
        result = DiagnosisResult()
        result.diagnoses = checks.finish(conns)
        result.counted_deliveries = checks.counted_lost
        reports.append(diagnoses_report(result, 0))
        assert len(result.diagnoses) == min(cap, 40) + (0 if cap > 40 else
                                                           sum(len(v.worst)
                                                               for v in checks.lost_over.values()))
    assert reports[0] == reports[1] == reports[2]
    assert {r["cause"] for r in reports[0]} == {"zero_window", "no_known_cause",
                                                "subscriber_offline", "connection_lost"}


def test_offline_gap_and_the_connection_at_a_time() -> None:
    iv = array("q", [10, 20, 50, 60, 90, NO_TS])
    assert offline_gap(iv, 30) == (20, 50)
    assert offline_gap(iv, 70) == (60, 90)
    assert offline_gap(iv, 5) == (0, 10)
    assert conn_at(iv, [1, 2, 3], 55) == 2
    assert conn_at(iv, [1, 2, 3], 70) == 2       # the last one before: it had just ended
    assert conn_at(iv, [1, 2, 3], 5) == -1


def _totals(checks: DeliveryChecks, named: set[int]) -> dict[str, tuple[int, int]]:
    """Per cause, the verdicts and the latency they explain, those counted past the cap
    included (what the report's ``diagnoses`` adds up); ``named`` the exchanges the exchange
    checks named (they get no verdict here)."""
    out: dict[str, list[int]] = {}
    for d in checks.finish({}, set(named)):
        t = out.setdefault(d.cause, [0, 0])
        t[0] += 1
        t[1] += d.latency_ns
    for cause, (n, wait) in checks.counted.items():
        t = out.setdefault(cause, [0, 0])
        t[0] += n
        t[1] += wait
    return {cause: (n, wait) for cause, (n, wait) in out.items()}


def test_copies_past_the_cap_are_counted_as_if_kept() -> None:
    """A report keeps few held copies whole: past the cap each is counted under its verdict's
    key, so the counts and the latency explained equal keeping every copy, and a session's
    share of paced copies is taken over all of its copies (before, on a capture five times
    the benchmark's, the kept ones were weighed against every late copy: receive_maximum
    vanished from the report)."""
    import random

    rng = random.Random(16)
    copies: list[tuple[Held, bool]] = []
    for i in range(1, 3_000):
        kind = rng.randrange(5)
        wait = rng.randrange(11, 400) * MS
        if kind == 0:        # queued while offline; flushed at a reconnection or not
            h = _held(i, wait=wait, offline=True, present=rng.random() < 0.8, session=9)
        elif kind == 1:      # an announced Receive Maximum, at the limit or below it
            h = _held(i, wait=wait, limit=3, n_open=rng.choice((2, 3)), session=4)
        else:                # paced by an unannounced limit (session 1) or not (session 2)
            session = rng.choice((1, 2))
            late = session == 2 and rng.random() < 0.5
            h = _held(i, wait=wait, session=session, after_ack=wait // 2 if late else MS // 5)
        copies.append((h, h.offline))
    totals = []
    on_the_wire = set(range(7, 3_000, 7))
    for cap in (100_000, 50, 0):
        checks = DeliveryChecks(cap)
        for h, offline in copies:
            if offline:
                checks.add_held(h)
            else:
                _add(checks, h)
        totals.append(_totals(checks, on_the_wire))
        if cap == 0:     # three examples kept per key: a connection, two sessions
            assert len(checks.finish({})) == 9
    assert totals[0] == totals[1] == totals[2]
    assert totals[0] != _totals(checks, set())
    assert set(totals[0]) == {"offline_queue_flush", "receive_maximum"}


def test_copies_past_the_cap_keep_long_waits_and_large_exchange_numbers() -> None:
    """Past the cap a copy is kept in 32 bits where it fits: a wait of 4.3 s or more and an
    exchange number past 2**32 still come back whole."""
    checks = DeliveryChecks(0)
    waits = [50 * MS, 5_000 * MS, 0xFFFF_FFFF, 40 * MS, 7_000 * MS, 30 * MS]
    for i, wait in enumerate(waits):
        checks.add_held(_held(i + (2**33 if i == 5 else 0), wait=wait))
    (over,) = checks.over.values()
    assert sorted(over.copies()) == sorted((h.ex_id, h.wait) for h in [
        _held(i + (2**33 if i == 5 else 0), wait=w) for i, w in enumerate(waits)]
        if h.ex_id not in {h.ex_id for h in over.worst})
    assert _totals(checks, set()) == {"receive_maximum": (len(waits), sum(waits))}

"""Causes seen at the delivery level: a message the broker held before sending it to a
subscriber (``offline_queue_flush``, ``receive_maximum``), and a copy that never came.

Why apart from the exchange checks: a PUBLISH the broker holds back is not on the wire yet, so
its own handshake (broker to subscriber) is quick; the wait shows only from the publisher's
PUBLISH to the broker's copy (the delivery's latency). The delivery matcher tells the diagnoser
of each copy that came at least the floor after its publication, with the subscriber's session
state at that moment (who was online when, the QoS 1/2 messages open towards it, the last
acknowledgement it sent), and of each expected copy that never came.

- ``offline_queue_flush``: the subscriber had no connection when the message was published;
  its session persisted (clean start 0 / a session expiry), the broker queued the message and
  sent it after the reconnection (CONNACK session present 1). The wait spans the offline gap.
- ``receive_maximum``: the broker may have at most the subscriber's Receive Maximum (MQTT 5,
  in its CONNECT) QoS 1/2 messages unacknowledged towards it [MQTT-3.3.4-7], or its own inflight
  limit (mosquitto's ``max_inflight_messages``, 20 by default; the built-in broker's
  ``max_inflight``). Signature: the copy left right after (within a quarter of its wait, and of
  5 ms) an acknowledgement by the subscriber that came after the publication, with as many
  messages open towards it as the Receive Maximum when it announced one; else when the
  broker sent the subscriber's late copies only as it acknowledged (at least three, and 80 %
  of them, right after an acknowledgement: an inflight limit nobody announced).
- A copy never delivered: ``subscriber_offline`` (no connection at the publication: QoS 0 is
  not queued for it [MQTT-3.1.2-5]), ``connection_lost`` (its connection ended within a second
  after: the message was in flight), ``zero_window`` (the subscriber's receive window was at zero
  then: a broker drops QoS 0 for a client that does not read), else ``no_known_cause``.

Pure: facts in, :class:`~.evidence.Diagnosis` out; the verdicts are made in :meth:`finish`,
when a flush's size and how a session's late copies were paced are known.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..records import NO_TS
from .evidence import NO_KNOWN_CAUSE, ByCause, Diagnosis, ms
from .facts import ConnFacts

__all__ = ["CONNECTION_LOST", "OFFLINE_QUEUE_FLUSH", "OPEN_COUNTED", "RECEIVE_MAXIMUM",
           "SUBSCRIBER_OFFLINE",
           "DeliveryChecks", "Held", "Lost", "after_ack", "conn_at", "offline_gap"]

OFFLINE_QUEUE_FLUSH = "offline_queue_flush"
RECEIVE_MAXIMUM = "receive_maximum"
SUBSCRIBER_OFFLINE = "subscriber_offline"
CONNECTION_LOST = "connection_lost"
ZERO_WINDOW = "zero_window"
#: Without a Receive Maximum, a subscriber's late copies are taken as paced by a broker's
#: inflight limit when at least this many, and this share of them, left right after one of
#: its acknowledgements.
PACED_MIN = 3
PACED_SHARE = 0.8
#: Open messages counted towards a subscriber without a Receive Maximum (the evidence says
#: "at least" past it).
OPEN_COUNTED = 64
#: Held copies past the cap remembered by their exchange (16 bytes each, 16 MB at most).
MAX_OVER_IDS = 1_000_000
_U32 = 0xFFFF_FFFF
#: Held copies past the cap kept whole per verdict's key: the report's examples of a cause.
WORST = 3
#: The ``reason`` codes of :data:`~..records.DELIVERY_REASONS`.
_OFFLINE = 2
_LEFT = 3
_LOST_ADVICE = {
    SUBSCRIBER_OFFLINE: "QoS 0 is not kept for an offline subscriber: publish at QoS 1/2 to a "
                        "persistent session (clean start 0, a session expiry) if it must "
                        "arrive",
    CONNECTION_LOST: "a QoS 0 message in flight when a connection drops is lost: use QoS 1/2, "
                     "and find why the connection ended (the reconnections' causes)",
    ZERO_WINDOW: "the subscriber stopped reading and the broker dropped what it could not "
                 "send: read the socket apart from slow work, or use QoS 1/2",
    NO_KNOWN_CAUSE: "",
}


@dataclass(slots=True)
class Held:
    """A copy that came at least the floor after its publication (times in ns)."""

    ex_id: int          # the subscriber's exchange (its copy)
    conn_id: int
    session: int
    pub_ts: int
    ts: int             # the copy's PUBLISH
    offline: bool       # no connection of the subscriber at the publication
    gap_start: int      # the offline gap around the publication (0: none)
    gap_end: int
    session_present: bool
    connack_frame: int
    n_open: int         # QoS 1/2 messages open towards the subscriber, this one included
    limit: int          # its Receive Maximum (0: not announced)
    ack_ts: int         # its last PUBACK/PUBCOMP before (0: none)
    ack_frame: int

    @property
    def wait(self) -> int:
        return self.ts - self.pub_ts


@dataclass(slots=True)
class Lost:
    """An expected copy that never came: ``ref`` its ordinal among those, ``reason`` the
    subscriber's presence at the publication."""

    ref: int
    pub_ex_id: int
    qos: int
    session: int
    conn_id: int
    pub_ts: int
    reason: int


class _Over:
    """The copies of one verdict's key past the cap: the ``WORST`` slowest kept whole (the
    examples the report can show), the others as their exchange and wait (16 bytes each, so
    that one the exchange checks named, or one no check explained, is told apart at the end as
    when kept whole); past ``MAX_OVER_IDS`` of those in all, only how many and their waits."""

    __slots__ = ("floor", "ids", "least", "long", "n", "wait", "waits", "worst")

    def __init__(self, first: Held) -> None:
        self.worst = [first]
        #: Waits that do not fit the 32-bit ``waits`` (4.3 s and over), by place.
        self.long: dict[int, int] = {}
        #: The place of the fastest of ``worst`` once full, and its (wait, -ex_id): what a
        #: copy must beat to take its place (the slowest kept, the first seen on a tie: the
        #: report's order of examples).
        self.least = 0
        self.floor = (0, 0)
        # 8 bytes a copy (a capture of 4 billion exchanges widens ``ids``; a wait too long
        # for 32 bits goes to ``long``): ids and waits of 64 bits made a report five times the
        # benchmark capture's 4 MB larger than at 1x
        self.ids: array[int] = array("I")
        self.waits: array[int] = array("I")
        self.n = 0          # past MAX_OVER_IDS: counted only
        self.wait = 0

    def add(self, h: Held, keep_id: bool) -> None:
        worst = self.worst
        if len(worst) < WORST:
            worst.append(h)
            if len(worst) == WORST:
                self._find_least()
            return
        if (h.wait, -h.ex_id) > self.floor:
            h, worst[self.least] = worst[self.least], h
            self._find_least()
        if keep_id:
            if h.ex_id > _U32 and self.ids.typecode == "I":
                self.ids = array("q", self.ids)
            self.ids.append(h.ex_id)
            if h.wait > _U32:
                self.long[len(self.waits)] = h.wait
            self.waits.append(min(h.wait, _U32))
        else:
            self.n += 1
            self.wait += h.wait

    def copies(self) -> Iterator[tuple[int, int]]:
        """The copies kept by their exchange: (ex_id, wait)."""
        long = self.long
        for i, (ex_id, wait) in enumerate(zip(self.ids, self.waits, strict=True)):
            yield ex_id, long.get(i, wait) if wait == _U32 else wait

    def _find_least(self) -> None:
        keys = [(h.wait, -h.ex_id) for h in self.worst]
        self.floor = min(keys)
        self.least = keys.index(self.floor)


#: Kinds of verdict keys past the cap: a flush (per connection), a copy held at an announced
#: Receive Maximum (per session), a copy paced by an unannounced limit (per session: named only
#: if the session's share of paced copies qualifies at the end).
_FLUSH, _AT_LIMIT, _PACED = range(3)


class NamedSet(Protocol):
    """The exchanges already named (:class:`~.core.Named`, or a plain set)."""

    def __contains__(self, ex_id: int) -> bool: ...

    def add(self, ex_id: int) -> None: ...


class DeliveryChecks:
    """Collects held and lost copies and names their causes at the end. At most ``cap``
    held copies are kept whole; past it each is counted (and its wait summed) under its
    verdict's key, with the slowest kept as the key's example, so the counts and the latency
    explained stay exact in bounded memory whatever the capture's length (a report keeps few
    whole, a detail analysis many: the exchanges' ``cause`` column names those). So are the
    copies never delivered: ``lost_cap`` kept whole and named at the end, the others named as
    they come (the subscriber's connection facts are there then: the end would only have
    fewer of them) and counted under their cause, with the earliest kept as examples."""

    def __init__(self, cap: int, lost_cap: int | None = None) -> None:
        self.cap = cap
        self.lost_cap = cap if lost_cap is None else lost_cap
        #: By cause, the copies never delivered past ``lost_cap``: how many, and the examples.
        self.lost_over = ByCause()
        self.counted_lost: dict[str, int] = {}
        #: Late copies to a connected subscriber, per session (those right after one of its
        #: acknowledgements are counted in ``paced`` too).
        self.late: Counter[int] = Counter()
        #: Per session, its late copies right after one of its acknowledgements, and per
        #: connection the queued copies it flushed: every one, kept whole or not (the
        #: verdicts depend on them).
        self.paced: Counter[int] = Counter()
        self.flushed: Counter[int] = Counter()
        self.held: list[Held] = []
        self.over: dict[tuple[int, int], _Over] = {}
        self.n_over_ids = 0
        self.lost: list[Lost] = []
        self.n_lost = 0
        self.dropped = 0
        #: (publication's ex_id, subscriber) -> the cause of a copy never delivered (made by
        #: :meth:`finish`).
        self.lost_causes: dict[tuple[int, int], str] = {}
        #: By cause, the verdicts counted past the cap and not kept whole: (exchanges, latency
        #: explained in ns), made by :meth:`finish`.
        self.counted: dict[str, tuple[int, int]] = {}

    def add_held(self, h: Held) -> None:
        if h.offline:
            if not _flushed(h):
                return      # queued, but not flushed at a reconnection: no verdict
            self.flushed[h.conn_id] += 1
            key = (_FLUSH, h.conn_id)
        else:
            self.paced[h.session] += 1
            if h.limit and h.n_open < h.limit:
                return      # below its Receive Maximum: no verdict
            key = (_AT_LIMIT if h.limit else _PACED, h.session)
        if len(self.held) < self.cap:
            self.held.append(h)
            return
        over = self.over.get(key)
        if over is None:
            self.over[key] = _Over(h)
        else:
            over.add(h, self.n_over_ids < MAX_OVER_IDS)
            self.n_over_ids += 1

    def add_lost(self, lost: Lost, conns: dict[int, ConnFacts]) -> None:
        self.n_lost += 1
        if len(self.lost) < self.lost_cap:
            self.lost.append(lost)
            return
        self.lost_over.add(_lost(lost, conns.get(lost.conn_id)))

    def _is_paced(self, session: int) -> bool:
        """Whether a session's late copies were paced by its acknowledgements (an inflight
        limit nobody announced)."""
        paced = self.paced[session]
        return paced >= PACED_MIN and paced >= PACED_SHARE * self.late[session]

    def _verdict(self, h: Held) -> Diagnosis | None:
        if h.offline:
            return _flush(h, self.flushed[h.conn_id])
        if h.limit:
            return _receive_maximum(h, "")
        if self._is_paced(h.session):
            return _receive_maximum(
                h, f"{self.paced[h.session]} of its {self.late[h.session]} late copies left "
                   "right after an acknowledgement")
        return None

    def finish(self, conns: dict[int, ConnFacts], named: NamedSet | None = None,
               asked: set[int] | None = None) -> list[Diagnosis]:
        """Every verdict kept whole and :attr:`counted` the rest. A held copy whose exchange
        is in ``named`` (the exchange checks found a cause on the wire: it comes first) gets
        no verdict here; those that get one are added to ``named`` (of the copies counted
        past the cap, only those in ``asked``, when given: the few the caller will look up,
        rather than a set as large as the capture)."""
        named = set() if named is None else named
        out: list[Diagnosis] = []
        for h in self.held:
            d = self._verdict(h) if h.ex_id not in named else None
            if d is not None:
                out.append(d)
                named.add(h.ex_id)
        counted: Counter[str] = Counter()
        waits: Counter[str] = Counter()
        for over in self.over.values():
            verdicts = [(h.ex_id, self._verdict(h)) for h in over.worst]
            cause = next((d.cause for _, d in verdicts if d is not None), None)
            if cause is None:
                continue        # one key, one verdict: none for any of its copies
            for ex_id, d in verdicts:
                if d is not None and ex_id not in named:
                    out.append(d)
                    named.add(ex_id)
            for ex_id, wait in over.copies():
                if ex_id not in named:
                    if asked is None or ex_id in asked:
                        named.add(ex_id)
                    counted[cause] += 1
                    waits[cause] += wait
            counted[cause] += over.n
            waits[cause] += over.wait
        self.counted = {cause: (counted[cause], waits[cause]) for cause in counted}
        for lost in self.lost:
            d = _lost(lost, conns.get(lost.conn_id))
            self.lost_causes[(lost.pub_ex_id, lost.session)] = d.cause
            out.append(d)
        out.extend(self.lost_over.examples())
        self.counted_lost = {cause: n for cause, (n, _) in self.lost_over.totals().items()}
        return out


def offline_gap(intervals: Sequence[int], ts: int) -> tuple[int, int]:
    """The time with no connection around ``ts`` in a session's flat ``(open, close)``
    intervals (close ``NO_TS`` while open): the last close before it and the first open after
    (0 where there is none)."""
    start = end = 0
    for i in range(0, len(intervals), 2):
        t_open, t_close = intervals[i], intervals[i + 1]
        if t_open > ts and (not end or t_open < end):
            end = t_open
        if t_close != NO_TS and t_close <= ts and t_close > start:
            start = t_close
    return start, end


def conn_at(intervals: Sequence[int], conn_ids: Sequence[int], ts: int) -> int:
    """The session's connection at ``ts``, else the last one before it (-1: none)."""
    best = -1
    for i in range(0, min(len(intervals), 2 * len(conn_ids)), 2):
        if intervals[i] <= ts:
            best = conn_ids[i // 2]
    return best


def _flushed(h: Held) -> bool:
    return h.offline and h.session_present and h.gap_end > h.pub_ts


def after_ack(pub_ts: int, ts: int, ack_ts: int) -> bool:
    """Whether a copy published at ``pub_ts`` left at ``ts`` right after (within a quarter of
    its wait, and of 5 ms) an acknowledgement at ``ack_ts`` that came after the publication."""
    return pub_ts < ack_ts <= ts and ts - ack_ts <= min((ts - pub_ts) // 4, 5_000_000)


def _open(n: int) -> str:
    return f"at least {n}" if n >= OPEN_COUNTED else str(n)


def _flush(h: Held, n: int) -> Diagnosis:
    gap = h.gap_end - h.gap_start if h.gap_start else 0
    where = f" (CONNACK at frame {h.connack_frame})" if h.connack_frame else ""
    return Diagnosis(
        OFFLINE_QUEUE_FLUSH, "exchange", h.ex_id, h.conn_id, h.pub_ts, h.wait,
        (h.connack_frame,) if h.connack_frame else (),
        f"the subscriber was offline when the message was published (a gap of {ms(gap)}); "
        f"the broker queued it for the persistent session and sent it {ms(h.wait)} after "
        f"publication, once the subscriber reconnected with its session present{where}; "
        f"{n} queued messages were flushed on that connection",
        "expected for a persistent session: keep the subscriber connected (or shorten its "
        "outages), or give old messages a Message Expiry Interval (MQTT 5) if stale data must "
        "not arrive late")


def _receive_maximum(h: Held, paced: str) -> Diagnosis:
    limit = (f"{h.n_open} QoS 1/2 messages were open towards the subscriber, its Receive "
             f"Maximum of {h.limit} (CONNECT)" if h.limit else
             f"{_open(h.n_open)} QoS 1/2 messages were open towards the subscriber and the "
             "broker sent "
             f"more only as it acknowledged ({paced}): an inflight limit (mosquitto's "
             "max_inflight_messages, a broker's max_inflight)")
    return Diagnosis(
        RECEIVE_MAXIMUM, "exchange", h.ex_id, h.conn_id, h.pub_ts, h.wait,
        (h.ack_frame,),
        f"{limit}; the broker held the message {ms(h.wait)} and sent it "
        f"{ms(h.ts - h.ack_ts)} after the subscriber's acknowledgement at frame {h.ack_frame} "
        "freed a slot",
        "the subscriber acknowledges too slowly for the rate: acknowledge as soon as the "
        "message is stored (not after processing it), raise its Receive Maximum or the "
        "broker's inflight limit, or subscribe at QoS 0")


def _lost(lost: Lost, conn: ConnFacts | None) -> Diagnosis:
    cause = NO_KNOWN_CAUSE
    frames: tuple[int, ...] = ()
    if lost.reason == _OFFLINE:
        why = "the subscriber had no connection when it was published"
        cause = SUBSCRIBER_OFFLINE
    elif lost.reason == _LEFT:
        why = "the subscriber's connection ended within a second after it was published"
        cause = CONNECTION_LOST
    else:
        why = "the subscriber was connected; no known signature fits"
        for w in conn.windows if conn is not None else ():
            if w.sender == 0 and w.start <= lost.pub_ts and (not w.end or lost.pub_ts <= w.end):
                cause = ZERO_WINDOW
                frames = (w.frame, w.end_frame) if w.end_frame else (w.frame,)
                why = (f"the subscriber's receive window was at zero (frame {w.frame}) when it "
                       "was published: the broker could not send it")
                break
    return Diagnosis(cause, "delivery", lost.ref, lost.conn_id, lost.pub_ts, 0, frames,
                     f"a QoS {lost.qos} message (exchange {lost.pub_ex_id}) never reached "
                     f"the subscriber: {why}", _LOST_ADVICE[cause])

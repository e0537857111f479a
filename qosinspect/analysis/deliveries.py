"""End-to-end matching: a publisher's PUBLISH to the copies the broker sends its subscribers.

When a capture holds both sides of a broker, each PUBLISH a client sends (c2b) is a
*publication*; each PUBLISH the broker sends a client (b2c) is matched to the earliest pending
publication with the same topic and payload, published no later, that this subscriber has not yet
received. A second copy of a message the subscriber already had is a *duplicate*; a subscriber
whose subscription matched the topic but who got no copy within the window is *not delivered*
(with whether it was connected when the message was published: QoS 0 to an offline session is
expected to be dropped, to a connected one it is a loss, unless the subscriber's connection ended
within ``LEAVE_GRACE_NS`` of the publication: its DISCONNECT was likely on the way already).

Who should receive what comes from the SUBSCRIBE/SUBACK pairs seen (granted QoS, ``no_local``);
shared subscriptions (``$share/...``) go to one member of a group, so they set no expectation. A
capture that starts after the subscriptions were made still matches deliveries and duplicates,
but cannot report losses.

Bounded: pending publications are kept for ``window_ns`` (default 60 s) and at most
``max_pending`` of them (default 100,000: at ten thousand messages a second, ten seconds for a
copy to come, enough for a client that re-sends after a reconnect); older ones are settled
(their missing deliveries written) and dropped. Publications leave in the order they came, so
they live in a ring of fixed arrays, one slot each (about 45 bytes, plus ~100 for the content
index); a Python object per pending publication would cost five times that. The content key is
Python's ``hash((topic, payload))``: fast, and only used within one run.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import cast

from ..mqtt.topics import topic_matches
from .records import DELIVERY_COLUMNS, DELIVERY_STATUSES, REPORT_DELIVERY_COLUMNS, RowStore

__all__ = ["DeliveryMatcher"]

_DELIVERED, _DUPLICATE, _NOT_DELIVERED = (DELIVERY_STATUSES.index(s) for s in DELIVERY_STATUSES)
_NONE = (-1, False)
#: Topic filters followed per session (a hostile capture could hold millions).
MAX_FILTERS_PER_SESSION = 1000

#: subscriber session code -> (granted QoS, no_local), for every subscriber whose filter matches.
Expected = dict[int, tuple[int, bool]]


class DeliveryMatcher:
    """Streaming publication/delivery matcher writing rows to a :class:`RowStore`.

    ``presence(session_code, ts)`` gives the ``reason`` code of a copy that never came (an index
    of :data:`~.records.DELIVERY_REASONS`: connected, offline, or left just after ``ts``); the
    correlator supplies it.

    Pending publication ``seq`` (a running number) lives in slot ``seq % max_pending`` of the
    ring arrays; ``_got`` and ``_got2`` hold the first two subscribers that had a copy (-1:
    none), ``_many`` the others (rare: a topic with three subscribers or more in the capture).
    """

    def __init__(self, presence: Callable[[int, int], int], *, window_ns: int = 60 * 10**9,
                 max_pending: int = 100_000, narrow: bool = False) -> None:
        #: ``narrow``: only the columns a report needs (:data:`REPORT_DELIVERY_COLUMNS`).
        self.narrow = narrow
        self.store = RowStore(REPORT_DELIVERY_COLUMNS if narrow else DELIVERY_COLUMNS)
        self.window_ns = window_ns
        self.max_pending = cap = max(1, max_pending)
        self._presence = presence
        self._ts = array("q", bytes(8 * cap))
        self._ex = array("q", bytes(8 * cap))
        self._key = array("q", bytes(8 * cap))
        self._qos = array("b", bytes(cap))
        self._pub = array("i", bytes(4 * cap))
        self._topic = array("i", bytes(4 * cap))
        self._got = array("i", bytes(4 * cap))
        self._got2 = array("i", bytes(4 * cap))
        self._expect: list[Expected | None] = [None] * cap
        self._many: dict[int, tuple[int, ...]] = {}
        self._head = 0  # oldest pending seq
        self._tail = 0  # next seq
        #: content key -> pending seq(s) with that content, oldest first.
        self._pending: dict[int, int | list[int]] = {}
        #: session code -> {topic filter: (granted qos, no_local)}
        self._subs: dict[int, dict[str, tuple[int, bool]]] = {}
        self._expect_cache: dict[str, Expected] = {}
        self.unmatched = 0
        self.untracked_filters = 0

    @property
    def pending(self) -> int:
        return self._tail - self._head

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, session: int, topic_filter: str, granted: int, no_local: bool) -> None:
        if topic_filter.startswith("$share/"):
            return
        subs = self._subs.setdefault(session, {})
        if len(subs) >= MAX_FILTERS_PER_SESSION and topic_filter not in subs:
            self.untracked_filters += 1  # bounded: a session's further filters set no
            return                       # expectation (losses to them go unreported)
        subs[topic_filter] = (granted, no_local)
        self._expect_cache.clear()

    def unsubscribe(self, session: int, topic_filter: str) -> None:
        subs = self._subs.get(session)
        if subs is not None and subs.pop(topic_filter, None) is not None:
            self._expect_cache.clear()

    def clear_session(self, session: int) -> None:
        if self._subs.pop(session, None):
            self._expect_cache.clear()

    def _expected(self, topic: str) -> Expected:
        cached = self._expect_cache.get(topic)
        if cached is not None:
            return cached
        result: Expected = {}
        for session, subs in self._subs.items():
            best = -1
            no_local = False
            for topic_filter, (granted, nl) in subs.items():
                if granted > best and topic_matches(topic_filter, topic):
                    best, no_local = granted, nl
            if best >= 0:
                result[session] = (best, no_local)
        if len(self._expect_cache) > 10_000:
            self._expect_cache.clear()
        self._expect_cache[topic] = result
        return result

    # -- the two sides -------------------------------------------------------------------------
    def publish(self, key: int, ts: int, ex_id: int, qos: int, publisher: int, topic_code: int,
                topic: str) -> None:
        """A client sent a new message (c2b)."""
        cap = self.max_pending
        if self._head < self._tail:
            horizon = ts - self.window_ns
            while self._head < self._tail and (self._tail - self._head >= cap
                                               or self._ts[self._head % cap] < horizon):
                self._settle_oldest()
        seq = self._tail
        self._tail = seq + 1
        i = seq % cap
        self._ts[i] = ts
        self._ex[i] = ex_id
        self._key[i] = key
        self._qos[i] = qos
        self._pub[i] = publisher
        self._topic[i] = topic_code
        self._got[i] = -1
        self._got2[i] = -1
        expect = self._expect_cache.get(topic)
        self._expect[i] = expect if expect is not None else self._expected(topic)
        pending = self._pending
        old = pending.get(key)
        if old is None:
            pending[key] = seq
        elif type(old) is list:
            old.append(seq)
        else:
            assert isinstance(old, int)
            pending[key] = [old, seq]

    def _got_it(self, seq: int, subscriber: int) -> bool:
        i = seq % self.max_pending
        if self._got[i] == subscriber or self._got2[i] == subscriber:
            return True
        return self._got2[i] >= 0 and subscriber in self._many.get(seq, ())

    def _add(self, seq: int, subscriber: int) -> None:
        i = seq % self.max_pending
        if self._got[i] < 0:
            self._got[i] = subscriber
        elif self._got2[i] < 0:
            self._got2[i] = subscriber
        else:
            self._many[seq] = (*self._many.get(seq, ()), subscriber)

    def deliver(self, key: int, ts: int, ex_id: int, qos: int, subscriber: int,
                retain: bool) -> None:
        """The broker sent a client a new message (b2c): match it to a publication."""
        found = self._pending.get(key)
        if found is None:
            self.unmatched += 1
            return
        cap = self.max_pending
        if type(found) is int:
            i = found % cap
            if self._got[i] < 0 and self._ts[i] <= ts:  # the common case: a first copy
                self._got[i] = subscriber
                self._row(found, subscriber, ex_id, ts, qos, _DELIVERED, retain)
                return
            seqs: list[int] | tuple[int, ...] = (found,)
        else:
            seqs = cast(list[int], found)
        already = -1
        for seq in seqs:
            if self._ts[seq % cap] > ts:
                break
            if not self._got_it(seq, subscriber):
                self._add(seq, subscriber)
                self._row(seq, subscriber, ex_id, ts, qos, _DELIVERED, retain)
                return
            already = seq
        if already < 0 or retain:
            # Nothing published before it (or a retained copy of an old message): not a match.
            self.unmatched += 1
            return
        self._row(already, subscriber, ex_id, ts, qos, _DUPLICATE, retain)

    def _row(self, seq: int, subscriber: int, sub_ex_id: int, ts: int, sub_qos: int,
             status: int, retain: bool) -> None:
        i = seq % self.max_pending
        if self.narrow:
            self.store.append(self._qos[i], sub_qos, status, 0)
            return
        expect = self._expect[i]
        granted = expect.get(subscriber, _NONE)[0] if expect is not None else -1
        self.store.append(self._ex[i], sub_ex_id, self._pub[i], subscriber, self._topic[i],
                          self._ts[i], ts, self._qos[i], sub_qos, granted, status, 0, retain)

    def _settle_oldest(self) -> None:
        """Write the expected copies of the oldest publication that never came; drop it."""
        seq = self._head
        self._head = seq + 1
        i = seq % self.max_pending
        expect = self._expect[i]
        self._expect[i] = None
        publisher = self._pub[i]
        ts = self._ts[i]
        if expect:
            for session, (granted, no_local) in expect.items():
                if self._got_it(seq, session) or (no_local and session == publisher):
                    continue
                reason = self._presence(session, ts)
                if self.narrow:
                    self.store.append(self._qos[i], -1, _NOT_DELIVERED, reason)
                else:
                    self.store.append(self._ex[i], -1, publisher, session, self._topic[i], ts,
                                      -(2**63), self._qos[i], -1, granted, _NOT_DELIVERED,
                                      reason, 0)
        if self._many:
            self._many.pop(seq, None)
        key = self._key[i]
        pending = self._pending
        found = pending.get(key)
        if found == seq:
            del pending[key]
        elif type(found) is list:
            found.remove(seq)  # the oldest of its content: at the front
            if len(found) == 1:
                pending[key] = found[0]

    def finish(self) -> None:
        """Settle every pending publication (end of input)."""
        while self._head < self._tail:
            self._settle_oldest()

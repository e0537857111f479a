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
``max_pending`` of them; older ones are settled (their missing deliveries written) and dropped.
The content key is Python's ``hash((topic, payload))``: fast, and only used within one run.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from ..mqtt.topics import topic_matches
from .records import DELIVERY_COLUMNS, DELIVERY_STATUSES, RowStore

__all__ = ["DeliveryMatcher", "Publication"]

_DELIVERED, _DUPLICATE, _NOT_DELIVERED = (DELIVERY_STATUSES.index(s) for s in DELIVERY_STATUSES)

#: (subscriber session code, granted QoS, no_local) for every subscriber whose filter matches.
Expected = tuple[tuple[int, int, bool], ...]


class Publication:
    """A publisher's message waiting for its copies."""

    __slots__ = ("delivered", "ex_id", "expected", "publisher", "qos", "topic", "ts")

    def __init__(self, ts: int, ex_id: int, qos: int, publisher: int, topic: int,
                 expected: Expected) -> None:
        self.ts = ts
        self.ex_id = ex_id
        self.qos = qos
        self.publisher = publisher
        self.topic = topic
        self.expected = expected
        #: Subscriber session codes that got a copy (None until the first).
        self.delivered: set[int] | None = None


class DeliveryMatcher:
    """Streaming publication/delivery matcher writing rows to a :class:`RowStore`.

    ``presence(session_code, ts)`` gives the ``reason`` code of a copy that never came (an index
    of :data:`~.records.DELIVERY_REASONS`: connected, offline, or left just after ``ts``); the
    correlator supplies it.
    """

    def __init__(self, presence: Callable[[int, int], int], *, window_ns: int = 60 * 10**9,
                 max_pending: int = 100_000) -> None:
        self.store = RowStore(DELIVERY_COLUMNS)
        self.window_ns = window_ns
        self.max_pending = max_pending
        self._presence = presence
        self._pending: dict[int, list[Publication]] = {}
        self._fifo: deque[tuple[int, Publication]] = deque()
        #: session code -> {topic filter: (granted qos, no_local)}
        self._subs: dict[int, dict[str, tuple[int, bool]]] = {}
        self._expect_cache: dict[str, Expected] = {}
        self.unmatched = 0

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, session: int, topic_filter: str, granted: int, no_local: bool) -> None:
        if topic_filter.startswith("$share/"):
            return
        self._subs.setdefault(session, {})[topic_filter] = (granted, no_local)
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
        out: list[tuple[int, int, bool]] = []
        for session, subs in self._subs.items():
            best = -1
            no_local = False
            for topic_filter, (granted, nl) in subs.items():
                if granted > best and topic_matches(topic_filter, topic):
                    best, no_local = granted, nl
            if best >= 0:
                out.append((session, best, no_local))
        result = tuple(out)
        if len(self._expect_cache) > 10_000:
            self._expect_cache.clear()
        self._expect_cache[topic] = result
        return result

    # -- the two sides -------------------------------------------------------------------------
    def publish(self, key: int, ts: int, ex_id: int, qos: int, publisher: int, topic_code: int,
                topic: str) -> None:
        """A client sent a new message (c2b)."""
        pub = Publication(ts, ex_id, qos, publisher, topic_code, self._expected(topic))
        lst = self._pending.get(key)
        if lst is None:
            self._pending[key] = [pub]
        else:
            lst.append(pub)
        fifo = self._fifo
        fifo.append((key, pub))
        horizon = ts - self.window_ns
        while fifo and (fifo[0][1].ts < horizon or len(fifo) > self.max_pending):
            self._settle(*fifo.popleft())

    def deliver(self, key: int, ts: int, ex_id: int, qos: int, subscriber: int,
                retain: bool) -> None:
        """The broker sent a client a new message (b2c): match it to a publication."""
        lst = self._pending.get(key)
        if not lst:
            self.unmatched += 1
            return
        already: Publication | None = None
        for pub in lst:
            if pub.ts > ts:
                break
            got = pub.delivered
            if got is None or subscriber not in got:
                if got is None:
                    pub.delivered = {subscriber}
                else:
                    got.add(subscriber)
                self._row(pub, subscriber, ex_id, ts, qos, _DELIVERED, 0, retain)
                return
            already = pub
        if already is None or retain:
            # Nothing published before it (or a retained copy of an old message): not a match.
            self.unmatched += 1
            return
        self._row(already, subscriber, ex_id, ts, qos, _DUPLICATE, 0, retain)

    def _row(self, pub: Publication, subscriber: int, sub_ex_id: int, ts: int, sub_qos: int,
             status: int, reason: int, retain: bool) -> None:
        granted = -1
        for session, g, _ in pub.expected:
            if session == subscriber:
                granted = g
                break
        self.store.append(pub.ex_id, sub_ex_id, pub.publisher, subscriber, pub.topic, pub.ts,
                          ts, pub.qos, sub_qos, granted, status, reason, retain)

    def _settle(self, key: int, pub: Publication) -> None:
        """Write the expected copies that never came, and drop the publication."""
        got = pub.delivered
        for session, granted, no_local in pub.expected:
            if (got is not None and session in got) or (no_local and session == pub.publisher):
                continue
            reason = self._presence(session, pub.ts)
            self.store.append(pub.ex_id, -1, pub.publisher, session, pub.topic, pub.ts,
                              -(2**63), pub.qos, -1, granted, _NOT_DELIVERED, reason, 0)
        lst = self._pending.get(key)
        if lst is not None:
            if lst and lst[0] is pub:
                del lst[0]
            else:
                with contextlib.suppress(ValueError):
                    lst.remove(pub)
            if not lst:
                del self._pending[key]

    def finish(self) -> None:
        """Settle every pending publication (end of input)."""
        while self._fifo:
            self._settle(*self._fifo.popleft())

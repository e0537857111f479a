"""End-to-end matching: a publisher's PUBLISH to the copies the broker sends its subscribers.

When a capture holds both sides of a broker, each PUBLISH a client sends (c2b) is a
*publication*; each PUBLISH the broker sends a client (b2c) is matched to the earliest pending
publication with the same topic and payload, published no later *to the same broker*, that this
subscriber has not yet received (a capture may hold several brokers: a message sent to one is
never expected from, or matched to, another). When the subscriber's SUBSCRIBE is in the capture,
only publications made after it are candidates: a broker forwards a message to the subscriptions
it has when the message arrives, so identical payloads sent before the subscription (a sensor
repeating a reading) are not the copies it gets later. A second copy of a message the
subscriber already had is a *duplicate*; a subscriber whose subscription matched the topic but
who got no copy within the window is *not delivered* (with whether it was connected when the
message was published: QoS 0 to an offline session is expected to be dropped, to a connected one
it is a loss, unless the subscriber's connection ended within ``LEAVE_GRACE_NS`` of the
publication: its DISCONNECT was likely on the way already).

Who should receive what comes from the SUBSCRIBE/SUBACK pairs seen (granted QoS, ``no_local``);
shared subscriptions (``$share/...``) go to one member of a group, so they set no expectation. A
capture that starts after the subscriptions were made still matches deliveries and duplicates,
but cannot report losses.

Bounded: pending publications are kept for ``window_ns`` (default 60 s) and at most
``max_pending`` of them (default 100,000: at ten thousand messages a second, ten seconds for a
copy to come, enough for a client that re-sends after a reconnect); older ones are settled
(their missing deliveries written) and dropped. Publications leave in the order they came, so
they live in a ring of ``max_pending`` slots, each a small compiled object (:class:`_Pending`,
about 110 bytes with mypyc, fields stored unboxed) plus about 50 for the content index (162
bytes in all, measured by ``tests/analysis/test_state_caps.py``): at most about 16 MB however
long the capture. The content key is Python's ``hash((topic, payload))``:
fast, and only used within one run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

from ..mqtt.topics import topic_matches
from .aggregate import Aggregate
from .records import DELIVERY_COLUMNS, DELIVERY_STATUSES, RowStore

__all__ = ["DeliveryMatcher"]

_DELIVERED: Final = 0
_DUPLICATE: Final = 1
_NOT_DELIVERED: Final = 2
assert DELIVERY_STATUSES[_DELIVERED] == "delivered" and DELIVERY_STATUSES[_DUPLICATE] == \
    "duplicate" and DELIVERY_STATUSES[_NOT_DELIVERED] == "not_delivered"
_NONE: Final = (-1, False)
#: Topic filters followed per session (a hostile capture could hold millions).
MAX_FILTERS_PER_SESSION: Final = 1000

#: subscriber session code -> (granted QoS, no_local), for every subscriber whose filter matches.
Expected = dict[int, tuple[int, bool]]


@final
class _Pending:
    """One publication waiting for its copies: what it was, and which subscribers had one
    (``got`` the first, -1 for none; ``many`` the others, rare: a topic with two subscribers
    or more in the capture).

    Nine fields (about 110 bytes compiled; 12 and 140 before, issue 11 §9): the ring slot is
    its running number, broker and QoS share one int (``brq``), and a publication nobody
    subscribed to shares one empty ``expect``."""

    __slots__ = ("brq", "ex_id", "expect", "got", "key", "many", "publisher", "topic", "ts")

    def __init__(self, ts: int, ex_id: int, key: int, broker: int, qos: int,
                 publisher: int, topic: int, expect: Expected) -> None:
        self.ts = ts
        self.ex_id = ex_id
        self.key = key
        self.brq = broker << 2 | qos
        self.publisher = publisher
        self.topic = topic
        self.expect = expect
        self.got = -1
        self.many: tuple[int, ...] = ()

    @property
    def broker(self) -> int:
        return self.brq >> 2

    @property
    def qos(self) -> int:
        return self.brq & 3

    def has(self, subscriber: int) -> bool:
        """Whether ``subscriber`` already had a copy."""
        if self.got == subscriber:
            return True
        return self.got >= 0 and subscriber in self.many

    def add(self, subscriber: int) -> None:
        if self.got < 0:
            self.got = subscriber
        else:
            self.many = (*self.many, subscriber)


#: The expectation of a topic no subscription matches: one object for all (never written).
_NO_EXPECT: Final[Expected] = {}


@final
class DeliveryMatcher:
    """Streaming publication/delivery matcher: every row is counted in ``aggregate`` (what the
    report prints) and, unless ``narrow`` (report mode), kept in a :class:`RowStore`.

    ``presence(session_code, ts)`` gives the ``reason`` code of a copy that never came (an index
    of :data:`~.records.DELIVERY_REASONS`: connected, offline, or left just after ``ts``); the
    correlator supplies it.

    Pending publication ``seq`` (a running number) lives in slot ``seq % max_pending`` of the
    ring; ``_pending[broker]`` finds them by content, oldest first (one index per broker: a
    list entry, not arithmetic on a 64-bit content key, on every publication and delivery).
    """

    def __init__(self, presence: Callable[[int, int], int], *, window_ns: int = 60 * 10**9,
                 max_pending: int = 100_000, narrow: bool = False,
                 aggregate: Aggregate | None = None) -> None:
        #: ``narrow``: rows are only counted (the report's figures), not kept.
        self.narrow = narrow
        self.aggregate = aggregate if aggregate is not None else Aggregate()
        self.store: RowStore | None = None if narrow else RowStore(DELIVERY_COLUMNS)
        self.window_ns = window_ns
        self.max_pending = cap = max(1, max_pending)
        self._presence = presence
        self._ring: list[_Pending | None] = [None] * cap
        self._head = 0  # oldest pending seq
        self._tail = 0  # next seq
        #: content key -> the pending publication(s) with that content, oldest first.
        self._pending: list[dict[int, _Pending | list[_Pending]]] = []
        #: session code -> {topic filter: (granted qos, no_local)}
        self._subs: dict[int, dict[str, tuple[int, bool]]] = {}
        #: session code -> its broker's code.
        self._broker_of: dict[int, int] = {}
        #: broker code -> topic -> who should get a message to it.
        self._expect_cache: dict[int, dict[str, Expected]] = {}
        self.unmatched = 0
        self.untracked_filters = 0
        #: Told of each copy that came at least ``slow_ns`` after its publication
        #: ``(publication time, subscriber, its exchange, time)`` and of each expected copy that
        #: never came ``(publication time, publication's exchange, QoS, subscriber, reason)``:
        #: the diagnoses (issue 16), set by the correlator.
        self.on_slow: Callable[[int, int, int, int], None] | None = None
        self.slow_ns = 0
        self.on_missing: Callable[[int, int, int, int, int], None] | None = None

    @property
    def pending(self) -> int:
        return self._tail - self._head

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, session: int, broker: int, topic_filter: str, granted: int,
                  no_local: bool) -> None:
        if topic_filter.startswith("$share/"):
            return
        subs = self._subs.setdefault(session, {})
        if len(subs) >= MAX_FILTERS_PER_SESSION and topic_filter not in subs:
            self.untracked_filters += 1  # bounded: a session's further filters set no
            return                       # expectation (losses to them go unreported)
        subs[topic_filter] = (granted, no_local)
        self._broker_of[session] = broker
        self._expect_cache.clear()

    def unsubscribe(self, session: int, topic_filter: str) -> None:
        subs = self._subs.get(session)
        if subs is not None and subs.pop(topic_filter, None) is not None:
            self._expect_cache.clear()

    def clear_session(self, session: int) -> None:
        if self._subs.pop(session, None):
            self._expect_cache.clear()

    def _expected(self, broker: int, topic: str) -> Expected:
        cache = self._expect_cache.get(broker)
        if cache is None:
            cache = self._expect_cache[broker] = {}
        cached = cache.get(topic)
        if cached is not None:
            return cached
        result: Expected = {}
        broker_of = self._broker_of
        for session, subs in self._subs.items():
            if broker_of.get(session) != broker:
                continue
            best = -1
            no_local = False
            for topic_filter, (granted, nl) in subs.items():
                if granted > best and topic_matches(topic_filter, topic):
                    best, no_local = granted, nl
            if best >= 0:
                result[session] = (best, no_local)
        if len(cache) > 10_000:
            cache.clear()
        if not result:
            result = _NO_EXPECT  # shared: a capture of 10^5 topics nobody follows
        cache[topic] = result
        return result

    # -- the two sides -------------------------------------------------------------------------
    def publish(self, content: int, ts: int, ex_id: int, qos: int, publisher: int, broker: int,
                topic_code: int, topic: str) -> None:
        """A client sent a new message (c2b) to ``broker``."""
        cap = self.max_pending
        if self._head < self._tail:
            horizon = ts - self.window_ns
            while self._head < self._tail:
                oldest = self._ring[self._head % cap]
                assert oldest is not None
                if self._tail - self._head < cap and oldest.ts >= horizon:
                    break
                self._settle_oldest()
        seq = self._tail
        self._tail = seq + 1
        cache = self._expect_cache.get(broker)
        expect = cache.get(topic) if cache is not None else None
        pub = _Pending(ts, ex_id, content, broker, qos, publisher, topic_code,
                       expect if expect is not None else self._expected(broker, topic))
        self._ring[seq % cap] = pub
        pending = self._index(broker)
        old = pending.get(content)
        if old is None:
            pending[content] = pub
        elif isinstance(old, list):
            old.append(pub)
        else:
            pending[content] = [old, pub]

    def deliver(self, content: int, ts: int, ex_id: int, qos: int, subscriber: int, broker: int,
                retain: bool) -> None:
        """``broker`` sent a client a new message (b2c): match it to a publication."""
        found = self._index(broker).get(content)
        if found is None:
            self.unmatched += 1
            return
        if isinstance(found, _Pending):
            if found.got < 0 and found.ts <= ts:  # the common case: a first copy
                found.got = subscriber
                self._row(found, subscriber, ex_id, ts, qos, _DELIVERED, retain)
                return
            pubs: list[_Pending] = [found]
        else:
            pubs = found
        already: _Pending | None = None
        unexpected: _Pending | None = None
        expected = False
        for pub in pubs:
            if pub.ts > ts:
                break
            mine = subscriber in pub.expect
            expected = expected or mine
            if pub.has(subscriber):
                already = pub
            elif mine:
                pub.add(subscriber)
                self._row(pub, subscriber, ex_id, ts, qos, _DELIVERED, retain)
                return
            elif unexpected is None:
                unexpected = pub
        if unexpected is not None and not expected:
            # No publication of this content was meant for this subscriber (its SUBSCRIBE is
            # not in the capture): the oldest one it has not had yet.
            unexpected.add(subscriber)
            self._row(unexpected, subscriber, ex_id, ts, qos, _DELIVERED, retain)
            return
        if already is None or retain:
            # Nothing published before it (or a retained copy of an old message): not a match.
            self.unmatched += 1
            return
        self._row(already, subscriber, ex_id, ts, qos, _DUPLICATE, retain)

    def _index(self, broker: int) -> dict[int, _Pending | list[_Pending]]:
        """The content index of one broker's pending publications."""
        indexes = self._pending
        while len(indexes) <= broker:
            indexes.append({})
        return indexes[broker]

    def _row(self, pub: _Pending, subscriber: int, sub_ex_id: int, ts: int, sub_qos: int,
             status: int, retain: bool) -> None:
        self.aggregate.delivery(pub.broker, pub.qos, sub_qos, status, 0)
        if (self.on_slow is not None and status == _DELIVERED
                and ts - pub.ts >= self.slow_ns):
            self.on_slow(pub.ts, subscriber, sub_ex_id, ts)
        store = self.store
        if store is None:
            return
        granted = pub.expect.get(subscriber, _NONE)[0]
        store.append(pub.ex_id, sub_ex_id, pub.publisher, subscriber, pub.topic, pub.ts,
                          ts, pub.qos, sub_qos, granted, status, 0, 1 if retain else 0)

    def _settle_oldest(self) -> None:
        """Write the expected copies of the oldest publication that never came; drop it."""
        seq = self._head
        self._head = seq + 1
        i = seq % self.max_pending
        pub = self._ring[i]
        assert pub is not None
        self._ring[i] = None
        publisher = pub.publisher
        ts = pub.ts
        for session, (granted, no_local) in pub.expect.items():
            if pub.has(session) or (no_local and session == publisher):
                continue
            reason = self._presence(session, ts)
            self.aggregate.delivery(pub.broker, pub.qos, -1, _NOT_DELIVERED, reason)
            if self.on_missing is not None:
                self.on_missing(ts, pub.ex_id, pub.qos, session, reason)
            if self.store is not None:
                self.store.append(pub.ex_id, -1, publisher, session, pub.topic, ts, -(2**63),
                                  pub.qos, -1, granted, _NOT_DELIVERED, reason, 0)
        pending = self._index(pub.broker)
        found = pending.get(pub.key)
        if found is pub:
            del pending[pub.key]
        elif isinstance(found, list):
            found.remove(pub)  # the oldest of its content: at the front
            if len(found) == 1:
                pending[pub.key] = found[0]

    def finish(self) -> None:
        """Settle every pending publication (end of input)."""
        while self._head < self._tail:
            self._settle_oldest()

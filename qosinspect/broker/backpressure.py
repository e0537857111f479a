"""Backpressure per subscriber: who may pause a publisher, and what happens to a slow one.

Every subscriber has its own bounded queue (``max_queued_messages`` messages and
``max_queued_bytes`` bytes of topic and payload, beyond the in-flight window). When a QoS 1/2
copy finds that queue full, what happens depends on what the subscriber has shown on its
current connection:

- **keeping up**: it acknowledged a message within the last ``slow_subscriber_timeout``
  seconds. The publisher is paused (the server stops reading it) until the queue has drained
  to half, so fan-in into a subscriber that reads loses nothing: publishers go at the pace of
  their slowest *live* reader, as TCP would make them.
- **not yet known**: it connected less than ``slow_subscriber_timeout`` ago and has
  acknowledged nothing yet (a reconnection with a backlog needs a round trip to show it
  reads). Nobody is paused; its queue may grow meanwhile, up to ``max_offline_messages``
  (oldest dropped and counted, as for an offline session).
- **slow**: anything else: it acknowledged nothing for that long. It never pauses anybody:
  ``queue_full_policy`` applies at once, so the other subscribers of the same publishers keep
  their pace. ``"disconnect"`` closes it with 0x97 (counted in ``slow_subscribers_closed``; a
  persistent session keeps queueing offline, capped by ``max_offline_messages``, oldest dropped
  and counted); ``"drop-oldest"`` keeps it connected and drops the oldest queued QoS 1/2
  messages (counted in ``dropped_queue_full``).

QoS 0 copies to a connection whose socket buffer is full are dropped and counted in
``dropped_qos0`` in every case. Nothing is dropped silently.

So a subscriber that never reads pauses no publisher at all, however often it reconnects (each
connection must earn the right to pause publishers by acknowledging something; before, a
30 s allowance started again on every connection). One that was keeping up and then stops holds
its publishers for at most ``slow_subscriber_timeout`` (5 s by default; checked by
:meth:`Backpressure._check_slow` on every tick). mosquitto, for comparison, never pauses
publishers: past its ``max_queued_messages`` (1000 by default) it drops QoS 1/2 messages for
that client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .state import NS, BrokerSession, ClientConn
from .subscriptions import SubscriptionHandling

__all__ = ["KEEPING_UP", "SLOW", "UNKNOWN", "Backpressure"]

KEEPING_UP, UNKNOWN, SLOW = 0, 1, 2


class Backpressure(SubscriptionHandling):
    """The backpressure side of :class:`.engine.BrokerEngine` (see the module docstring)."""

    def _queue_full(self, sess: BrokerSession) -> bool:
        state = sess.state
        cfg = self.config
        return len(state.queue) >= cfg.max_queued_messages or \
            state.queued_bytes >= cfg.max_queued_bytes

    def _verdict(self, conn: ClientConn, now: int) -> int:
        """KEEPING_UP, UNKNOWN or SLOW (see the module docstring)."""
        limit = self.config.slow_subscriber_timeout * NS
        last = conn.last_ack_ns
        if last is not None:
            return KEEPING_UP if now - last <= limit else SLOW
        return UNKNOWN if now - conn.opened_ns <= limit else SLOW

    def _overflow(self, sess: BrokerSession, conn: ClientConn, origin: ClientConn | None,
                  now: int) -> None:
        """``sess`` (online on ``conn``) has a full queue after a QoS 1/2 copy went in."""
        verdict = self._verdict(conn, now)
        if verdict == SLOW:
            self._slow(sess, conn, now)
        elif verdict == KEEPING_UP and origin is not None:
            if not origin.blocked_on:
                self.stats.publishers_paused += 1
            if origin not in sess.blockers:
                sess.paused_publishers += 1
            sess.blockers.add(origin)
            origin.blocked_on.add(sess)

    def _slow(self, sess: BrokerSession, conn: ClientConn, now: int) -> None:
        """Apply ``queue_full_policy`` to a subscriber that makes no progress."""
        self._release(sess)
        if self.config.queue_full_policy == "drop-oldest":
            state = sess.state
            cfg = self.config
            while (len(state.queue) > cfg.max_queued_messages or
                   state.queued_bytes > cfg.max_queued_bytes) and \
                    state.drop_oldest() is not None:
                self.stats.dropped_queue_full += 1
            self._touch(sess)
        else:
            self.stats.slow_subscribers_closed += 1
            self.close(conn, 0x97, now)              # quota exceeded: publishers go on

    def _progress(self, sess: BrokerSession, conn: ClientConn, now: int) -> None:
        """``conn`` acknowledged a message: publishers resume once its queue drained."""
        conn.last_ack_ns = now
        if sess.blockers:
            state = sess.state
            cfg = self.config
            if len(state.queue) <= cfg.max_queued_messages // 2 and \
                    state.queued_bytes <= cfg.max_queued_bytes // 2:
                self._release(sess)

    def _check_slow(self, now: int) -> None:
        """Subscribers with a full queue that have become slow (publishers waiting for them
        or not): ``queue_full_policy`` now, so nobody waits longer than the timeout."""
        for sess in [s for c in self.conns.values() if (s := c.session) is not None
                     and s.conn is c and (s.blockers or self._queue_full(s))]:
            if sess.conn is not None and self._verdict(sess.conn, now) == SLOW:
                self._slow(sess, sess.conn, now)

    def _release(self, sess: BrokerSession) -> None:
        """Unblock the publishers waiting for ``sess`` (it drained, went offline or ended)."""
        for pub in sess.blockers:
            pub.blocked_on.discard(sess)
            if not pub.blocked_on:
                self._unblocked.append(pub)
        sess.blockers.clear()

    def _forget_blocks(self, conn: ClientConn) -> None:
        for sess in conn.blocked_on:
            sess.blockers.discard(conn)
        conn.blocked_on.clear()

    if TYPE_CHECKING:                   # defined by the engine, which ends connections
        def close(self, conn: ClientConn, reason: int | None, now: int, *,
                  publish_will: bool = True) -> None: ...

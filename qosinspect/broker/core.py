"""The broker engine's state and the plumbing every part of it uses.

:class:`EngineState` holds what the engine knows (sessions, retained messages, the subscription
index, connections, the persistence hooks) and the few primitives the rest is written in:
queueing packets for a connection (``_send``), and recording for :mod:`.store` what changed.
The rules live in the subclasses: :mod:`.subscriptions` (SUBSCRIBE, UNSUBSCRIBE, retained
messages) and :mod:`.engine` (connections, sessions, wills, routing), so each file reads as one
part of the protocol.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..mqtt.packets import Packet, Publish, Will
from .auth import Authenticator
from .retained import RetainedStore
from .routing import SubscriptionIndex
from .state import NEVER, BrokerConfig, BrokerSession, BrokerStats, ClientConn, SubOptions
from .sysinfo import QosView

__all__ = ["EngineState"]


class EngineState:
    """What the broker engine knows, and how its parts queue output and record changes."""

    def __init__(self, config: BrokerConfig | None = None,
                 auth: Authenticator | None = None) -> None:
        self.config = config or BrokerConfig()
        self.auth = auth or Authenticator(allow_anonymous=True)
        self.stats = BrokerStats()
        self.sessions: dict[str, BrokerSession] = {}
        self.retained = RetainedStore()
        self._retained_seq = 0
        #: The $SYS topics the broker retains (they do not count against max_retained).
        self.sys_topics: set[str] = set()
        #: Connections with retained messages still to send (see :mod:`.retained`).
        self._cursors: dict[int, ClientConn] = {}
        self.index: SubscriptionIndex[SubOptions] = SubscriptionIndex()
        self.conns: dict[int, ClientConn] = {}
        self._rr = itertools.count()
        self._conn_ids = itertools.count()
        self.qos_view = QosView()
        self._wills: dict[str, tuple[Will, int, int]] = {}   # client id -> (will, due, version)
        self._offline: dict[str, BrokerSession] = {}          # sessions that may expire
        self._dirty: dict[int, ClientConn] = {}
        self._unblocked: list[ClientConn] = []
        #: Persistence hooks (see :mod:`.store`): global changes and sessions with journals.
        self.changes: list[tuple[Any, ...]] | None = None
        self.dirty_sessions: dict[str, BrokerSession] = {}
        self._seq = itertools.count(1)

    # -- driver interface -------------------------------------------------------------------------

    def open(self, now: int) -> ClientConn:
        """A new network connection (it must send CONNECT within ``connect_timeout``)."""
        conn = ClientConn(next(self._conn_ids), opened_ns=now, last_rx_ns=now)
        self.conns[conn.conn_id] = conn
        return conn

    def retained_seq(self) -> int:
        """A number larger than any given before: orders retained messages and cursors."""
        self._retained_seq += 1
        return self._retained_seq

    @property
    def retained_pending(self) -> bool:
        """Whether some connection still has retained messages to receive."""
        return bool(self._cursors)

    def take_output(self) -> list[ClientConn]:
        """Connections with packets to send or a close pending, since the last call."""
        if not self._dirty:
            return []
        out = list(self._dirty.values())
        self._dirty.clear()
        return out

    def take_unblocked(self) -> list[ClientConn]:
        """Publishers that may be read from again (their subscribers' queues drained)."""
        out = self._unblocked
        self._unblocked = []
        return [c for c in out if not c.blocked_on and not c.closed]

    def _send(self, conn: ClientConn, packets: list[Packet] | Packet) -> None:
        """Queue packets for ``conn``; PUBLISH ones are counted and get topic aliases."""
        if conn.closed:
            return
        if not isinstance(packets, list):
            packets = [packets]
        elif not packets:
            return
        sent = 0
        for packet in packets:
            if type(packet) is Publish:
                sent += 1
        if sent:
            self.stats.messages_sent += sent
            if conn.aliases is not None:
                packets = self._aliased(conn, packets)
        conn.outbox.extend(packets)
        self._dirty[conn.conn_id] = conn

    def _send_publishes(self, conn: ClientConn, packets: list[Packet]) -> None:
        """:meth:`_send` of PUBLISH packets only (what routing sends): no type test each."""
        if conn.closed or not packets:
            return
        self.stats.messages_sent += len(packets)
        if conn.aliases is not None:
            packets = self._aliased(conn, packets)
        conn.outbox.extend(packets)
        self._dirty[conn.conn_id] = conn

    @staticmethod
    def _aliased(conn: ClientConn, packets: list[Packet]) -> list[Packet]:
        """``packets`` with the topic aliases of ``conn`` applied to the PUBLISH ones."""
        aliases = conn.aliases
        assert aliases is not None
        return [aliases.apply(p) if isinstance(p, Publish) else p for p in packets]

    # -- persistence hooks ------------------------------------------------------------------------

    def _persist_session(self, sess: BrokerSession) -> None:
        """Record the session row (expiry, version); start or stop its journal."""
        if self.changes is None:
            return
        if sess.persistent:
            if sess.state.journal is None:
                sess.state.journal = []
            self.changes.append(("session", sess.client_id, sess.expiry_s, sess.version,
                                 sess.username))
            self.dirty_sessions[sess.client_id] = sess
        elif sess.state.journal is not None:
            sess.state.journal = None
            self.changes.append(("end_session", sess.client_id))

    def _touch(self, sess: BrokerSession) -> None:
        if sess.state.journal is not None:
            self.dirty_sessions[sess.client_id] = sess

    def restore_session(self, sess: BrokerSession) -> None:
        """Adopt an offline session read back from a store (subscriptions included)."""
        self.sessions[sess.client_id] = sess
        for topic_filter, opt in sess.subs.items():
            self.index.add(sess.client_id, topic_filter, opt)
        if sess.expiry_s != NEVER:
            self._offline[sess.client_id] = sess

    def restart_tags(self, after: int) -> None:
        """Continue message numbers after ``after`` (the largest one in a loaded store)."""
        self._seq = itertools.count(after + 1)

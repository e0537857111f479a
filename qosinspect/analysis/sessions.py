"""Connections and sessions: CONNECT, CONNACK, DISCONNECT, the transport's end, reconnections.

One of the correlator's trackers (:class:`~.correlate.Correlator` holds one
:class:`SessionTracker`, which ends exchanges through the :class:`~.exchanges.ExchangeTracker` it
is given); the rules, stated once here:

* **Connections** carry their CONNECT (client id, version, keep alive, clean start, session
  expiry) and CONNACK (result, session present, server keep alive). How one ended: a DISCONNECT
  wins (from the broker with 0x8E it is ``taken_over``, with 0x8D ``keepalive_expired``); then a
  session takeover (a new CONNECT with the same client id while it was open [MQTT-3.1.4-3]);
  then ``keepalive_expired`` when the client had been silent for more than 1.5 x the keep alive
  when the transport closed [MQTT-3.1.2-24]; then the transport's ``fin``, ``rst``, ``idle``,
  ``reused`` or ``end_of_capture``.
* **Brokers.** A broker is a server endpoint, address and port: every client that reaches the
  same address on the same port talks to one broker. Sessions, reconnections and deliveries are
  matched within one broker only (a capture may hold a local broker, a cloud one and a public
  test broker at once).
* **Sessions** are keyed by broker and client id and outlive connections [MQTT-4.1.0-1]. An
  empty client id or a connection without CONNECT (capture started mid-session) gets a session
  of its own, ``conn:<conn_id>``; an MQTT 5 Assigned Client Identifier re-keys it. The same
  client id on two brokers is named ``<client id>@<broker>`` (both of them) at the end.
* **Reconnections**: a CONNECT for a session that had a connection before. Its open exchanges
  stay open across the gap when the session persists (clean session 0, or MQTT 5 session expiry
  > 0), and a DUP re-send or PUBREL re-send on the new connection joins them [MQTT-4.4.0-1].
  They are ``abandoned`` when the session ends instead: the connection closes and the session
  does not persist, the new CONNECT has clean start [MQTT-3.1.2-4], or the CONNACK says session
  present 0 [MQTT-3.2.2-2].
* **What is kept after the end** (bounded memory, issue 13): an ended connection (closed,
  reset, refused, evicted by the decoder) is packed at once into one row of the
  :class:`~.conntable.ConnectionTable` and its objects released; a late event on it (a TCP
  retransmission or anomaly of a lingering flow) makes it an object again for that event. A
  session with no connection keeps everything a reconnection needs for
  ``session_idle_timeout_ns`` of packet time after its last connection ended, then is dropped:
  its open exchanges end ``evicted``, its subscriptions are no longer matched, a later CONNECT
  with its client id starts a new session, and a ``sessions_dropped`` note says so.
* **Released** (report mode, ``release``: what ``report`` and ``watch`` run): once a connection
  ended more than that same timeout ago and nothing can ask for its record again (its session's
  open exchanges, a reconnection still counting what crosses it), its row is folded into the
  report's :class:`~.conntotals.ConnectionTotals` and released; a dropped session leaves only
  its code's slot (a shared placeholder, 8 bytes, and its broker's code, 4). The decoder ends a
  closed connection's tombstone after 120 s, so no event names it an hour later; one that did
  would start a new record. A detail analysis keeps every row: its tables list them.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Final, final

from ..anomalies import AnomalyKind
from ..events import ConnectionInfo, MqttPacketEvent
from ..mqtt.enums import Direction
from ..mqtt.packets import ConnAck, Connect, Disconnect, SubAck
from .conntable import ConnectionTable
from .conntotals import ConnectionTotals
from .deliveries import DeliveryMatcher
from .exchanges import ABANDONED, ExchangeTracker
from .logs import DIRECTION_NAMES, AnomalyLog, EvidenceLog
from .records import NO_TS, AnomalyRecord, Connection, Reconnect
from .state import RELEASED, ConnState, SessionState

__all__ = ["SessionTracker"]

_DIRS: Final = DIRECTION_NAMES
#: Ended connections made objects again by late events, packed again past this many.
REVIVED_BATCH: Final = 256
#: Connections a session's history holds before the ones that ended long ago are trimmed
#: (report mode).
TRIM_AT: Final = 64
#: Transport ends after which the connection may still be up: the capture ended, or the decoder
#: stopped following it (``evicted``, its cap on connections open at once).
_NOT_ENDED: Final = frozenset({"end_of_capture", "evicted"})


@final
class SessionTracker:
    """Connections, sessions and reconnections (see the module docstring).

    ``conns`` holds the connections being followed by id (an ended one is a row of ``table``
    instead), ``sessions`` every session being followed by key and ``by_code`` every session by
    its code (the ``session`` column of the stores), ``reconnects`` what was found.
    """

    def __init__(self, anomalies: AnomalyLog, exchanges: ExchangeTracker,
                 matcher: DeliveryMatcher | None, *, default_version: int,
                 same_broker: tuple[tuple[str, ...], ...] = (),
                 idle_timeout_ns: int = 3600 * 10**9) -> None:
        self.anomalies = anomalies
        self.exchanges = exchanges
        self.matcher = matcher
        self.default_version = default_version
        self.conns: dict[int, ConnState] = {}
        #: Ended connections, packed (:mod:`.conntable`).
        self.table = ConnectionTable()
        #: Ended connections made objects again for a late event (a TCP retransmission or
        #: anomaly after the close), packed again in batches.
        self.revived: list[ConnState] = []
        #: Per-kind anomaly counts of ended connections that had any (the cap holds after
        #: the close too).
        self.ended_counts: dict[int, dict[str, int]] = {}
        #: Sessions with no connection, dropped ``idle_timeout_ns`` after their last one ended:
        #: (code, packet time it ended) pairs, oldest first, read from ``idle_head`` on (an
        #: entry whose session has reconnected since, or ended again later, is skipped: its
        #: ``idle_since`` differs). 16 bytes a session, not a dict entry and two int objects.
        self.idle: array[int] = array("q")
        self.idle_head = 0
        self.idle_timeout_ns = idle_timeout_ns
        #: Packet time of the next look for idle sessions to drop.
        self.next_sweep = NO_TS
        self.n_sessions_dropped = 0
        #: By broker code: session key -> session (one dict per broker, not one keyed by
        #: (broker, key) tuples: 64 bytes less a session, issue 11 §9).
        self.sessions: list[dict[str, SessionState]] = []
        self.by_code: list[SessionState] = []
        #: Reconnections as rows: all of them, or the first ``max_reconnect_rows`` (report
        #: mode: the report lists the first; each is counted from its connection at the end).
        self.reconnects: list[Reconnect] = []
        self.max_reconnect_rows: int | None = None
        #: Hears of each reconnection as it is found (a live view).
        self.on_reconnect: Callable[[Reconnect], None] | None = None
        #: Hears of each reconnection once final: when the connection it began ends (what
        #: crossed it is counted on that connection until then); the aggregate folds it.
        self.on_reconnect_final: Callable[[Reconnect], None] | None = None
        #: Reconnections found (the rows may stop at ``max_reconnect_rows``).
        self.n_reconnects = 0
        #: Broker endpoint (``host:port``) -> code, and the endpoints by code.
        self.broker_codes: dict[str, int] = {}
        self.brokers: list[str] = []
        #: Endpoint -> the endpoint that names its broker (``same_broker`` groups).
        self.alias: dict[str, str] = {ep: group[0] for group in same_broker for ep in group}
        #: Endpoint names, one string each (shared by every connection to it).
        self._names: dict[str, str] = {}
        #: Report mode: ended connections and dropped sessions are released (module
        #: docstring), their connections folded into ``folded``.
        self.release = False
        self.folded = ConnectionTotals()
        #: The TCP evidence log, whose connections keep their names when folded.
        self.evidence: EvidenceLog | None = None
        #: Ended connections in the order they were packed: (conn_id, t_close) pairs
        #: (``release`` only).
        self.ended: array[int] = array("q")
        #: Broker code of released connections that kept anomaly or reconnection rows name
        #: (:meth:`name_sessions`), and the brokers of released sessions' keys when there is
        #: more than one broker (bit per broker code).
        self.released_brokers: dict[int, int] = {}
        self.released_keys: dict[str, int] = {}
        #: Sessions released, and each session's broker code by code (a released one's too).
        self.n_sessions_released = 0
        self.session_broker: array[int] = array("i")
        #: Hears of each session as it is released (a live view's per-client counters), and
        #: of each connection (the diagnoses forget what they kept for its reconnection).
        self.on_session_released: Callable[[SessionState], None] | None = None
        self.on_conn_released: Callable[[int], None] | None = None

    def new_conn(self, info: ConnectionInfo, ts: int) -> ConnState:
        broker = str(info.broker)
        # one string per endpoint, not one per connection (100,000 connections to one broker)
        broker = self._names.setdefault(broker, broker)
        rec = Connection(conn_id=info.conn_id, client=str(info.client),
                         broker=broker, transport=info.transport, t_open=ts,
                         sides_known=info.sides_known)
        c = ConnState(rec, self.broker_code(rec.broker))
        self.conns[info.conn_id] = c
        return c

    def broker_code(self, endpoint: str) -> int:
        endpoint = self.alias.get(endpoint, endpoint)
        code = self.broker_codes.get(endpoint)
        if code is None:
            code = self.broker_codes[endpoint] = len(self.brokers)
            self.brokers.append(endpoint)
        return code

    def conn(self, info: ConnectionInfo, ts: int) -> ConnState:
        """The connection of an event: followed, ended (made an object again), or new."""
        c = self.conns.get(info.conn_id)
        if c is not None:
            return c
        row = self.table.row_of(info.conn_id)
        return self.new_conn(info, ts) if row < 0 else self.revive(info.conn_id, row)

    def revive(self, conn_id: int, row: int) -> ConnState:
        """An ended connection as an object again, for a late event: its record from the row,
        its state as it was when it ended (it stays ended, and is packed again later)."""
        rec, code, same_client = self.table.record(row)
        s = self.by_code[code] if code >= 0 else None
        if s is RELEASED:
            s = None
        if s is not None:
            rec.session = s.key
            if same_client:
                rec.client_id = s.rec.client_id
        c = ConnState(rec, self.table.get(conn_id, "broker_code"))
        c.sess = s
        c.closed = True
        c.connect_seen = rec.t_connect is not None
        c.connack_seen = rec.t_connack is not None
        c.refused = rec.connack_code is not None and rec.connack_code != 0
        c.taken_over = rec.end == "taken_over"
        c.keep_alive = (rec.server_keep_alive if rec.server_keep_alive is not None
                        else rec.keep_alive or 0)
        c.t_last_c2b = NO_TS if rec.t_last_c2b is None else rec.t_last_c2b
        c.t_last_b2c = NO_TS if rec.t_last_b2c is None else rec.t_last_b2c
        c.unfinished_c2b = self.table.get(conn_id, "unfinished_c2b")
        c.unfinished_b2c = self.table.get(conn_id, "unfinished_b2c")
        c.anomaly_counts = self.ended_counts.get(conn_id)
        self.conns[conn_id] = c
        self.revived.append(c)
        if len(self.revived) > REVIVED_BATCH:
            self.retire_revived()
        return c

    def retire(self, c: ConnState) -> None:
        """Pack an ended connection into the table and stop holding its objects."""
        rec = c.rec
        rec.t_last_c2b = None if c.t_last_c2b == NO_TS else c.t_last_c2b
        rec.t_last_b2c = None if c.t_last_b2c == NO_TS else c.t_last_b2c
        s = c.sess
        if self.release and self.table.row_of(c.conn_id) < 0:
            self.ended.append(c.conn_id)
            self.ended.append(NO_TS if rec.t_close is None else rec.t_close)
        self.table.add(rec, -1 if s is None else s.code, None if s is None else s.rec.client_id,
                       c.broker, c.unfinished_c2b, c.unfinished_b2c)
        if c.anomaly_counts:
            self.ended_counts[c.conn_id] = c.anomaly_counts
        if c.reconnect is not None and self.on_reconnect_final is not None:
            self.on_reconnect_final(c.reconnect)    # (a revived connection has none: once)
        if self.conns.get(c.conn_id) is c:
            del self.conns[c.conn_id]

    def retire_revived(self) -> None:
        """Pack again the ended connections a late event made objects (all but the newest,
        whose event may have a second half: a stream gap is an event and an anomaly)."""
        keep = self.revived[-1:]
        for c in self.revived[:-1]:
            if self.conns.get(c.conn_id) is c:
                self.retire(c)
        self.revived = keep

    def retire_all(self) -> None:
        """At the end: every connection is ended (closed as ``end_of_capture`` before)."""
        for c in list(self.conns.values()):
            self.retire(c)
        self.revived = []

    # -- what the ended connections' rows say ---------------------------------------------------

    def t_close_of(self, conn_id: int) -> int | None:
        c = self.conns.get(conn_id)
        if c is not None:
            return c.rec.t_close
        return self.table.t_close(conn_id) if self.table.row_of(conn_id) >= 0 else None

    def transport_end_of(self, conn_id: int) -> str | None:
        """How the transport of a connection ended (None: unknown connection, or open)."""
        c = self.conns.get(conn_id)
        if c is not None:
            return c.rec.transport_end
        if self.table.row_of(conn_id) < 0:
            return None
        return self.table.word(conn_id, "transport_end")

    def broker_of(self, conn_id: int) -> int:
        """A connection's broker code (-1: unknown connection)."""
        c = self.conns.get(conn_id)
        if c is not None:
            return c.broker
        if self.table.row_of(conn_id) >= 0:
            return self.table.get(conn_id, "broker_code")
        return self.released_brokers.get(conn_id, -1)

    # -- sessions with no connection -------------------------------------------------------------

    def _idle(self, s: SessionState, ts: int) -> None:
        """A session has no connection from ``ts`` on."""
        s.idle_since = ts
        self.idle.append(s.code)
        self.idle.append(ts)

    @property
    def n_connections_seen(self) -> int:
        """Connections seen so far: ended (rows) and followed."""
        table = self.table
        return (self.folded.seen + len(table)
                + sum(1 for c in self.conns.values() if table.row_of(c.conn_id) < 0))

    def seal(self) -> None:
        """At the end: the session records get the times kept unboxed while running."""
        for s in self.by_code:
            if s is RELEASED:
                continue
            s.rec.t_first = None if s.t_first == NO_TS else s.t_first
            s.rec.t_last = None if s.t_last == NO_TS else s.t_last

    def sweep(self, now: int, frame: int) -> None:
        """Drop the sessions whose last connection ended more than ``idle_timeout_ns`` ago
        (packet time): their state is released (open exchanges end ``evicted``, their
        subscriptions are no longer matched, a later CONNECT with the client id starts a new
        session), said by one ``sessions_dropped`` note per sweep. Looked at every eighth of
        the timeout."""
        timeout = self.idle_timeout_ns
        self.next_sweep = now + max(1, timeout // 8)
        idle = self.idle
        dropped = persistent = evicted = 0
        i = self.idle_head
        while i < len(idle):
            code, since = idle[i], idle[i + 1]
            if now - since <= timeout:
                break
            i += 2
            s = self.by_code[code]
            if s.idle_since != since or s.conn is not None:
                continue  # reconnected since, or idle again from a later time
            s.idle_since = NO_TS
            dropped += 1
            persistent += s.persistent
            evicted += self.exchanges.evict_all(s, now)
            if self.matcher is not None:
                self.matcher.clear_session(code)
            keyed = self._keyed(s.broker)
            if keyed.get(s.key) is s:
                del keyed[s.key]
            s.done = None
            if self.release:
                self._release_session(s)
        if i > len(idle) // 2:      # (the array is compacted when half of it is read)
            del idle[:i]
            i = 0
        self.idle_head = i
        if self.release:
            self._release_ended(now - timeout)
        if dropped:
            self.n_sessions_dropped += dropped
            self.anomalies.record(
                now, AnomalyKind.SESSIONS_DROPPED,
                f"{dropped} sessions with no connection for more than {timeout / 1e9:g} s "
                f"dropped ({persistent} persistent; {evicted} open exchanges no longer "
                "followed): a later CONNECT with their client id starts a new session",
                None, None, frame)

    # -- releasing what ended (report mode) ------------------------------------------------------

    def _release_session(self, s: SessionState) -> None:
        """A dropped session (report mode): its slot keeps a placeholder; its key is kept only
        when more than one broker may share it (:meth:`name_sessions`)."""
        if self.on_session_released is not None:
            self.on_session_released(s)
        if len(self.brokers) > 1:
            self.released_keys[s.key] = self.released_keys.get(s.key, 0) | (1 << s.broker)
        self.by_code[s.code] = RELEASED
        self.n_sessions_released += 1

    def _pinned(self) -> set[int]:
        """Ended connections whose record may still be asked for: the last connection of a
        session not dropped (a reconnection reads how it ended), those of open exchanges (how
        they end reads it), and the connection before a reconnection still counting what
        crosses it (its diagnosis reads it)."""
        pinned: set[int] = set()
        for c in self.conns.values():
            if c.reconnect is not None:
                pinned.add(c.reconnect.prev_conn_id)
        for s in self.exchanges.busy.values():
            for ex in s.open.values():
                pinned.add(ex.conn_id)
                pinned.add(ex.last_conn_id)
        idle, by_code = self.idle, self.by_code
        for i in range(self.idle_head, len(idle), 2):
            s = by_code[idle[i]]
            if s.idle_since == idle[i + 1]:
                pinned.add(s.last_conn_id)
        return pinned

    def _release_ended(self, limit: int) -> None:
        """Fold into ``folded`` and release the connections that ended before ``limit``
        (packet time) and are not :meth:`_pinned` (those wait for a later sweep); trim the
        connection history of sessions that reconnect all day."""
        ended = self.ended
        if len(ended) and ended[1] < limit:
            pinned = self._pinned()
            named = {a.conn_id for a in self.anomalies.rows if a.conn_id is not None}
            named.update(rc.prev_conn_id for rc in self.reconnects)
            table, folded = self.table, self.folded
            evidence: set[int] = self.evidence.conn_ids if self.evidence is not None else set()
            later = array("q")
            i = 0
            while i < len(ended):
                conn_id, t = ended[i], ended[i + 1]
                if t >= limit:
                    break
                i += 2
                row = table.row_of(conn_id)
                if row < 0:
                    continue
                if conn_id in pinned or conn_id in self.conns:
                    later.append(conn_id)
                    later.append(t)
                    continue
                rec = table.record(row)[0]
                broker = table.get(conn_id, "broker_code")
                folded.add(rec, broker, evidence)
                if conn_id in named:
                    self.released_brokers[conn_id] = broker
                self.ended_counts.pop(conn_id, None)
                table.release(conn_id)
                if self.on_conn_released is not None:
                    self.on_conn_released(conn_id)
            del ended[:i]
            ended.extend(later)
            table.compact()
        self._trim_histories(limit)

    def _trim_histories(self, limit: int) -> None:
        """A session followed for days through thousands of reconnections keeps only the
        connections (ids and open/close times) that ended after ``limit``: the delivery checks
        read them for copies within the joinable window, far shorter."""
        shift: dict[int, int] = {}
        seen: set[int] = set()
        for c in self.conns.values():
            s = c.sess
            if s is None or s.code in seen:
                continue
            seen.add(s.code)
            iv = s.intervals
            if len(iv) < 2 * TRIM_AT:
                continue
            k = 0
            while k < len(iv) and iv[k + 1] != NO_TS and iv[k + 1] < limit:
                k += 2
            if k:
                del iv[:k]
                del s.rec.conn_ids[:k // 2]
                s.rec.n_trimmed += k // 2
                shift[s.code] = k
        if shift:
            for c in self.conns.values():
                if c.sess is not None and c.interval >= 0:
                    c.interval -= shift.get(c.sess.code, 0)

    def _keyed(self, broker: int) -> dict[str, SessionState]:
        """The sessions of one broker by key."""
        sessions = self.sessions
        while len(sessions) <= broker:
            sessions.append({})
        return sessions[broker]

    def session(self, key: str, client_id: str | None, anonymous: bool,
                broker: int) -> SessionState:
        keyed = self._keyed(broker)
        s = keyed.get(key)
        if s is None:
            s = SessionState(key, len(self.by_code), client_id, anonymous, broker,
                             self.brokers[broker])
            keyed[key] = s
            self.by_code.append(s)
            self.session_broker.append(broker)
        return s

    def name_sessions(self, anomalies: list[AnomalyRecord]) -> None:
        """At the end: a client id used on several brokers names its sessions
        ``<client id>@<broker>`` (everywhere the name was written)."""
        if len(self.brokers) < 2:
            return      # (one broker: no name is shared, and no set per session is made)
        # (brokers per key: one broker may hold two sessions of a key, the first dropped
        # after its idle timeout)
        brokers: dict[str, set[int]] = {}
        for key, bits in self.released_keys.items():
            brokers[key] = {b for b in range(bits.bit_length()) if bits >> b & 1}
        for s in self.by_code:
            if s is not RELEASED:
                brokers.setdefault(s.key, set()).add(s.broker)
        renamed: dict[tuple[int, str], str] = {}
        for s in self.by_code:
            if s is not RELEASED and len(brokers[s.key]) > 1:
                new = f"{s.key}@{self.brokers[s.broker]}"
                renamed[(s.broker, s.key)] = new
                s.key = s.rec.session = new
        if not renamed:
            return
        # (the connections' rows name their session by code: renamed with it)
        for rc in self.reconnects:
            broker = self.broker_of(rc.prev_conn_id)
            if broker >= 0:
                rc.session = renamed.get((broker, rc.session), rc.session)
        for a in anomalies:
            broker = self.broker_of(a.conn_id) if a.conn_id is not None else -1
            if broker >= 0 and a.session is not None:
                a.session = renamed.get((broker, a.session), a.session)

    def attach(self, c: ConnState, s: SessionState, ts: int) -> None:
        c.sess = s
        s.conn = c
        s.last_conn_id = c.conn_id
        s.idle_since = NO_TS
        s.rec.conn_ids.append(c.conn_id)
        if s.t_first == NO_TS:
            s.t_first = ts
        c.interval = len(s.intervals)
        s.intervals.append(ts)
        s.intervals.append(NO_TS)
        c.rec.session = s.key
        c.rec.client_id = s.rec.client_id if c.rec.client_id is None else c.rec.client_id

    def connect(self, ev: MqttPacketEvent, c: ConnState, d: int, p: Connect) -> None:
        ts = ev.ts_ns
        rec = c.rec
        if c.connect_seen:
            self.anomalies.record(ts, AnomalyKind.SECOND_CONNECT, "a second CONNECT on the same "
                                  "connection [MQTT-3.1.0-2]", c, d, ev.frame)
            return
        c.connect_seen = True
        version = p.protocol_version
        rec.client_id = p.client_id
        rec.version = version
        rec.version_source = "connect"
        rec.keep_alive = p.keep_alive
        rec.clean_start = p.clean_start
        expiry = p.properties.session_expiry_interval if version >= 5 else None
        rec.session_expiry = expiry
        rec.username = p.username
        rec.password_present = p.password is not None
        rec.will_topic = p.will.topic if p.will is not None else None
        rec.t_connect = ts
        c.keep_alive = p.keep_alive
        # [MQTT-3.1.2-4] / MQTT 5 3.1.2.11.2: what survives this connection.
        persistent = (expiry or 0) > 0 if version >= 5 else not p.clean_start
        old = c.sess
        if p.client_id:
            s = self.session(p.client_id, p.client_id, anonymous=False, broker=c.broker)
        else:
            s = self.session(f"conn:{c.conn_id}", "", anonymous=True, broker=c.broker)
            s.rec.client_id = ""
        prev_id = (s.conn.conn_id if s.conn is not None and s.conn is not c
                   else s.last_conn_id)
        prev = self.conns.get(prev_id)
        t_prev_close: int | None = None
        rc: Reconnect | None = None
        if prev_id >= 0 and prev_id != c.conn_id:
            if prev is not None and not prev.closed:
                prev.taken_over = True  # [MQTT-3.1.4-3]
                t_drop: int | None = ts
                cause: str | None = "taken_over"
                unfinished = [0, 0]
                for ex in s.open.values():
                    unfinished[ex.direction] += 1
                reason = prev.rec.disconnect_reason
            elif prev is not None:
                t_drop = t_prev_close = prev.rec.t_close
                cause = prev.rec.end
                unfinished = [prev.unfinished_c2b, prev.unfinished_b2c]
                reason = prev.rec.disconnect_reason
            elif self.table.row_of(prev_id) < 0:  # released (pinned while it matters)
                t_drop = cause = reason = None
                unfinished = [0, 0]
            else:  # ended: its row
                table = self.table
                t_drop = t_prev_close = table.t_close(prev_id)
                cause = table.word(prev_id, "end")
                unfinished = [table.get(prev_id, "unfinished_c2b"),
                              table.get(prev_id, "unfinished_b2c")]
                code = table.get(prev_id, "disconnect_reason")
                reason = None if code < 0 else code
            rc = Reconnect(session=s.key, client_id=s.rec.client_id, prev_conn_id=prev_id,
                           next_conn_id=c.conn_id, t_drop=t_drop, t_connect=ts, cause=cause,
                           disconnect_reason=reason,
                           clean_start=p.clean_start, unfinished_c2b=unfinished[0],
                           unfinished_b2c=unfinished[1], abandoned=s.abandoned_pending,
                           index=self.n_reconnects)
            s.abandoned_pending = 0
            self.n_reconnects += 1
            if self.max_reconnect_rows is None or len(self.reconnects) < self.max_reconnect_rows:
                self.reconnects.append(rc)
            if self.on_reconnect is not None:
                self.on_reconnect(rc)
            c.reconnect = rc
        if old is not None and old is not s:
            # Packets came before the CONNECT: their anonymous session keeps them.
            old.conn = None
            self._idle(old, ts)
        s.persistent = persistent
        s.rec.persistent = persistent
        if p.clean_start:
            # The broker discards the previous session [MQTT-3.1.2-4] [MQTT-3.1.2-6].
            t_end = t_prev_close if t_prev_close else ts
            n = self.exchanges.end_all(s, ABANDONED, t_end)
            if rc is not None:
                rc.abandoned += n
            if self.matcher is not None:
                self.matcher.clear_session(s.code)
        c.rec.client_id = p.client_id
        self.attach(c, s, ts)

    def connack(self, ev: MqttPacketEvent, c: ConnState, p: ConnAck) -> None:
        rec = c.rec
        if c.connack_seen:
            return
        c.connack_seen = True
        rec.t_connack = ev.ts_ns
        rec.connack_code = int(p.reason_code)
        rec.session_present = bool(p.session_present)
        c.refused = p.reason_code != 0
        props = p.properties
        if props:
            ska = props.server_keep_alive
            if ska is not None:
                rec.server_keep_alive = ska
                c.keep_alive = ska
            assigned = props.assigned_client_identifier
            s0 = c.sess
            if (assigned and s0 is not None and s0.anonymous
                    and assigned not in self._keyed(s0.broker)):
                keyed = self._keyed(s0.broker)
                del keyed[s0.key]
                s0.key = s0.rec.session = assigned
                s0.rec.client_id = assigned
                s0.anonymous = False
                keyed[assigned] = s0
                rec.session = assigned
            if assigned:
                rec.assigned_client_id = assigned
        if c.reconnect is not None:
            c.reconnect.session_present = bool(p.session_present)
        s = c.sess
        if s is not None and not c.refused and not p.session_present:
            # No session state on the broker: what the earlier connections left is dropped, on
            # the client too [MQTT-3.2.2-2] [MQTT-4.1.0-1].
            earlier = [ex for ex in s.open.values() if ex.conn_id != c.conn_id]
            for ex in earlier:
                t_close = self.t_close_of(ex.last_conn_id)
                self.exchanges.end(s, ex, ABANDONED, t_close if t_close else ev.ts_ns)
            if c.reconnect is not None:
                c.reconnect.abandoned += len(earlier)

    def suback(self, ev: MqttPacketEvent, c: ConnState, d: int, p: SubAck) -> None:
        asked = c.pending_subs.pop(p.packet_id, None) if c.pending_subs is not None else None
        if asked is None:
            self.anomalies.record(ev.ts_ns, AnomalyKind.ORPHAN_ACK, f"SUBACK for packet id "
                                  f"{p.packet_id}: no SUBSCRIBE with that id is pending", c, d,
                                  ev.frame, p.packet_id)
            return
        if self.matcher is None or c.sess is None:
            return
        for (topic_filter, _, no_local), code in zip(asked, p.reason_codes, strict=False):
            if code < 0x80:
                self.matcher.subscribe(c.sess.code, c.sess.broker, topic_filter, int(code),
                                       no_local)

    def disconnect(self, ev: MqttPacketEvent, c: ConnState, d: int, p: Disconnect) -> None:
        rec = c.rec
        rec.disconnect_by = _DIRS[d]
        rec.t_disconnect = ev.ts_ns
        v5 = (rec.version or self.default_version) >= 5
        rec.disconnect_reason = int(p.reason_code) if v5 else None
        if v5 and c.sess is not None:
            expiry = p.properties.session_expiry_interval
            if expiry is not None:
                c.sess.persistent = c.sess.rec.persistent = expiry > 0

    def close(self, c: ConnState, ts: int, how: str, closed_by: Direction | None) -> None:
        """The transport ended: how the connection ended, what it leaves to its session; then
        its record is packed into the table and its objects released (:meth:`retire`)."""
        self._end(c, ts, how, closed_by)
        self.retire(c)

    def _end(self, c: ConnState, ts: int, how: str, closed_by: Direction | None) -> None:
        if c.closed:
            return
        c.closed = True
        rec = c.rec
        rec.t_close = ts
        rec.transport_end = how
        rec.closed_by = None if closed_by is None else str(closed_by)
        if rec.disconnect_by is not None:
            reason = rec.disconnect_reason
            if rec.disconnect_by == "b2c" and reason == 0x8E:
                rec.end = "taken_over"
            elif rec.disconnect_by == "b2c" and reason == 0x8D:
                rec.end = "keepalive_expired"
            else:
                rec.end = "disconnect"
        elif c.taken_over:
            rec.end = "taken_over"
        elif (how not in _NOT_ENDED and c.keep_alive > 0 and c.t_last_c2b != NO_TS
              and (ts - c.t_last_c2b) * 2 > 3 * c.keep_alive * 10**9):
            rec.end = "keepalive_expired"  # [MQTT-3.1.2-24]
        else:
            rec.end = how
        # Reset before a single MQTT packet either way (nothing listening, a firewall, a proxy
        # refusing): an attempt, not a connection. TLS carries bytes we cannot read: not one.
        rec.attempt = (how == "rst" and rec.n_packets_c2b == 0 and rec.n_packets_b2c == 0
                       and rec.transport == "tcp")
        c.pending_subs = None
        c.pending_unsubs = None
        s = c.sess
        if s is None:
            return
        if c.interval >= 0 and how not in _NOT_ENDED:
            # (a connection still open at the end of the capture, or no longer followed by the
            # decoder, did not end: left open)
            s.intervals[c.interval + 1] = ts
        if s.t_last == NO_TS or ts > s.t_last:
            s.t_last = ts
        if s.conn is not c:
            return  # taken over: the session lives on in the new connection
        s.conn = None
        self._idle(s, ts)
        unfinished = [0, 0]
        for ex in s.open.values():
            unfinished[ex.direction] += 1
        c.unfinished_c2b, c.unfinished_b2c = unfinished
        rec.unfinished_at_end = unfinished[0] + unfinished[1]
        if how == "evicted":
            # The decoder stopped following the connection (its cap on connections open at
            # once): what was open on it is no longer followed either, as the exchange cap
            # would say (outcome ``evicted``, counted).
            self.exchanges.evict_all(s, ts)
        elif how != "end_of_capture" and (not s.persistent or s.anonymous):
            s.abandoned_pending += self.exchanges.end_all(s, ABANDONED, ts)


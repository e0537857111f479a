"""The correlator's mutable state: open exchanges, connections and sessions being followed.

Kept apart from the records (:mod:`.records`, what comes out) because this is what must stay
*bounded*: an :class:`OpenExchange` lives only while its handshake is unfinished (at most
``max_open_per_session`` per session), a :class:`ConnState` sheds its pending maps when the
connection closes, and a :class:`SessionState` remembers, per packet id and direction, only the
row of the last finished exchange (:class:`DoneIndex`: at most one per packet id and direction,
the protocol's own bound, to let a late acknowledgement or a DUP re-send join the exchange it
belongs to).

Directions are ints here (0 = c2b, 1 = b2c) and exchange keys are ``direction << 16 | packet_id``:
one dict lookup on an int per acknowledgement.
"""

from __future__ import annotations

from array import array
from typing import Final

from .records import NO_TS, AnomalyRecord, Connection, Reconnect, Session

__all__ = ["B2C", "C2B", "ConnState", "DoneIndex", "OpenExchange", "SessionState"]

C2B: Final = 0
B2C: Final = 1
#: Keys a :class:`DoneIndex` keeps in a dict before it turns into one array.
DONE_DICT_LIMIT: Final = 4096


class OpenExchange:
    """One QoS 1/2 exchange whose handshake is not finished yet.

    Attribute names are the column names of :data:`~.records.EXCHANGE_COLUMNS` (the row written
    when it finishes, :meth:`detail_row` or :meth:`report_row`, is read off them in column
    order), plus ``key``; ``content`` is the hash of topic and payload (tells a re-send from a
    reused packet id).
    """

    __slots__ = (
        "conn_id",
        "content",
        "direction",
        "dup_after_complete",
        "dup_first",
        "ex_id",
        "frame",
        "key",
        "last_conn_id",
        "last_step",
        "n_dup",
        "n_puback",
        "n_pubcomp",
        "n_publish",
        "n_pubrec",
        "n_pubrel",
        "outcome",
        "packet_id",
        "payload_len",
        "puback_reason",
        "pubcomp_reason",
        "pubrec_reason",
        "pubrel_reason",
        "qos",
        "retain",
        "session",
        "spans_reconnect",
        "t_end",
        "t_puback",
        "t_puback_last",
        "t_pubcomp",
        "t_pubcomp_last",
        "t_publish",
        "t_publish_last",
        "t_pubrec",
        "t_pubrec_last",
        "t_pubrel",
        "t_pubrel_last",
        "topic",
    )

    def __init__(self, ex_id: int, session: int, conn_id: int, direction: int, qos: int,
                 packet_id: int, topic: int, payload_len: int, retain: int,
                 dup: int, frame: int, ts: int, content: int, key: int) -> None:
        self.ex_id = ex_id
        self.session = session
        self.conn_id = conn_id
        self.last_conn_id = conn_id
        self.direction = direction
        self.qos = qos
        self.packet_id = packet_id
        self.topic = topic
        self.payload_len = payload_len
        self.retain = retain
        self.dup_first = dup
        self.frame = frame
        self.t_publish = ts
        self.t_publish_last = ts
        self.n_publish = 1
        self.n_dup = dup
        self.t_puback = NO_TS
        self.t_puback_last = NO_TS
        self.n_puback = 0
        self.puback_reason = -1
        self.t_pubrec = NO_TS
        self.t_pubrec_last = NO_TS
        self.n_pubrec = 0
        self.pubrec_reason = -1
        self.t_pubrel = NO_TS
        self.t_pubrel_last = NO_TS
        self.n_pubrel = 0
        self.pubrel_reason = -1
        self.t_pubcomp = NO_TS
        self.t_pubcomp_last = NO_TS
        self.n_pubcomp = 0
        self.pubcomp_reason = -1
        self.t_end = NO_TS
        self.outcome = 0
        self.last_step = 0
        self.spans_reconnect = 0
        self.dup_after_complete = 0
        self.content = content
        self.key = key

    def detail_row(self) -> tuple[int, ...]:
        """The row of :data:`~.records.EXCHANGE_COLUMNS` (in that order: a test holds the two
        together). Written out rather than read by name: compiled, these are direct reads."""
        return (self.ex_id, self.session, self.conn_id, self.last_conn_id, self.direction,
                self.qos, self.packet_id, self.topic, self.payload_len, self.retain,
                self.dup_first, self.frame, self.t_publish, self.t_publish_last, self.n_publish,
                self.n_dup, self.t_puback, self.t_puback_last, self.n_puback,
                self.puback_reason, self.t_pubrec, self.t_pubrec_last, self.n_pubrec,
                self.pubrec_reason, self.t_pubrel, self.t_pubrel_last, self.n_pubrel,
                self.pubrel_reason, self.t_pubcomp, self.t_pubcomp_last, self.n_pubcomp,
                self.pubcomp_reason, self.t_end, self.outcome, self.last_step,
                self.spans_reconnect, self.dup_after_complete, self.content)

    def report_row(self, broker: int) -> tuple[int, ...]:
        """The row of :data:`~.records.REPORT_EXCHANGE_COLUMNS` (likewise), with the code of
        the exchange's broker."""
        return (self.conn_id, self.qos, self.t_publish, self.n_publish, self.n_dup,
                self.t_puback, self.t_pubrec, self.n_pubrec, self.t_pubrel, self.n_pubrel,
                self.t_pubcomp, self.t_end, self.outcome, self.last_step, self.content, broker)


class DoneIndex:
    """Exchange key (``direction << 16 | packet_id``) -> row of the last finished exchange.

    A dict while small; past ``DICT_LIMIT`` keys it becomes one int32 array over the whole key
    space (512 KiB), which costs 4 bytes a key where a dict entry with two int objects costs
    about 100. Busy sessions cycle through all 65535 ids, and a client re-sending thousands of
    messages after a reconnect needs every one of them remembered.
    """

    __slots__ = ("_arr", "_dict")
    DICT_LIMIT: Final = DONE_DICT_LIMIT

    def __init__(self) -> None:
        self._dict: dict[int, int] | None = {}
        self._arr: array[int] | None = None

    def get(self, key: int) -> int | None:
        d = self._dict
        if d is not None:
            return d.get(key)
        arr = self._arr
        assert arr is not None
        row = arr[key]
        return None if row < 0 else row

    def put(self, key: int, row: int) -> None:
        d = self._dict
        if d is None:
            assert self._arr is not None
            self._arr[key] = row
            return
        d[key] = row
        if len(d) > DONE_DICT_LIMIT:
            arr = array("i", [-1]) * (2 << 16)
            for k, v in d.items():
                arr[k] = v
            self._arr = arr
            self._dict = None

    def forget(self, key: int, row: int) -> None:
        """Forget ``key`` if it still names ``row`` (that exchange can no longer be joined)."""
        d = self._dict
        if d is not None:
            if d.get(key) == row:
                del d[key]
            return
        arr = self._arr
        assert arr is not None
        if arr[key] == row:
            arr[key] = -1

    def __len__(self) -> int:
        if self._dict is not None:
            return len(self._dict)
        assert self._arr is not None
        return len(self._arr) - self._arr.count(-1)


class SessionState:
    """A session being followed: its record, its open exchanges and its connections."""

    __slots__ = ("abandoned_pending", "anonymous", "broker", "code", "conn", "done",
                 "intervals", "key", "last_conn", "open", "persistent", "rec")
    # A capture may hold hundreds of thousands of sessions with one exchange each: what only a
    # busy session needs (the index of finished exchanges) is made on first use.

    def __init__(self, key: str, code: int, client_id: str | None, anonymous: bool,
                 broker: int, broker_name: str) -> None:
        self.key = key
        self.code = code
        self.anonymous = anonymous
        #: The broker's code (:attr:`~.sessions.SessionTracker.brokers`).
        self.broker = broker
        self.rec = Session(session=key, client_id=client_id, broker=broker_name)
        #: exchange key -> open exchange, oldest first (dicts keep insertion order).
        self.open: dict[int, OpenExchange] = {}
        #: exchange key -> row in the exchange store of the last finished one (None until an
        #: exchange of the session finishes).
        self.done: DoneIndex | None = None
        #: The connection currently carrying the session, and the one before it.
        self.conn: ConnState | None = None
        self.last_conn: ConnState | None = None
        #: Whether the session outlives its connection (clean session 0 / session expiry > 0).
        self.persistent = False
        #: (t_open, t_close or None) of each connection: who was online when.
        self.intervals: list[list[int | None]] = []
        #: Exchanges abandoned when the last connection closed, for the next Reconnect.
        self.abandoned_pending = 0

    def presence(self, ts: int, grace_ns: int) -> int:
        """1 if a connection of the session was open at ``ts`` and for ``grace_ns`` after it,
        3 if one was open at ``ts`` but ended within the grace, 2 if none was open (the
        ``reason`` codes of :data:`~.records.DELIVERY_REASONS`)."""
        for start, end in self.intervals:
            if start is not None and start <= ts and (end is None or ts <= end):
                return 1 if end is None or end - ts >= grace_ns else 3
        return 2


class ConnState:
    """A connection being followed.

    Small on purpose (a capture may hold 100,000 connections at once, issue 11 §9): the maps
    of pending SUBSCRIBE/UNSUBSCRIBE and the per-kind anomaly counts are None until the first
    one, and dropped again when the connection closes.
    """

    __slots__ = (
        "anomaly_counts",
        "broker",
        "closed",
        "conn_id",
        "connack_seen",
        "connect_seen",
        "gap_anomaly",
        "gap_frame",
        "interval",
        "keep_alive",
        "pending_subs",
        "pending_unsubs",
        "rec",
        "reconnect",
        "refused",
        "sess",
        "t_last_b2c",
        "t_last_c2b",
        "taken_over",
        "unfinished_b2c",
        "unfinished_c2b",
    )

    def __init__(self, rec: Connection, broker: int) -> None:
        self.rec = rec
        self.conn_id = rec.conn_id
        #: The broker's code: a server endpoint (address and port).
        self.broker = broker
        #: The last packet each way (NO_TS: none yet); kept here, unboxed, on the per-packet
        #: path, and copied into the record when the connection closes.
        self.t_last_c2b = NO_TS
        self.t_last_b2c = NO_TS
        self.sess: SessionState | None = None
        self.connect_seen = False
        self.connack_seen = False
        self.refused = False
        self.closed = False
        self.taken_over = False
        #: Effective keep alive in seconds (CONNECT, or the server's in an MQTT 5 CONNACK).
        self.keep_alive = 0
        #: SUBSCRIBE / UNSUBSCRIBE packet id -> what was asked, until the ack (None: none yet).
        self.pending_subs: dict[int, tuple[tuple[str, int, bool], ...]] | None = None
        self.pending_unsubs: dict[int, tuple[str, ...]] | None = None
        #: The reconnection this connection resumed, if any (to count what it redelivered).
        self.reconnect: Reconnect | None = None
        #: Rows of anomalies written per kind (capped; None until the first).
        self.anomaly_counts: dict[str, int] | None = None
        #: Open exchanges left when the connection closed, per direction.
        self.unfinished_c2b = 0
        self.unfinished_b2c = 0
        #: The last stream gap's anomaly row and frame (merged with the decoder's own anomaly).
        self.gap_anomaly: AnomalyRecord | None = None
        self.gap_frame = -1
        #: [t_open, t_close] of this connection in its session's ``intervals``.
        self.interval: list[int | None] | None = None

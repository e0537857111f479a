"""The correlator's mutable state: open exchanges, connections and sessions being followed.

Kept apart from the records (:mod:`.records`, what comes out) because this is what must stay
*bounded*: an :class:`OpenExchange` lives only while its handshake is unfinished (at most
``max_open_per_session`` per session), a :class:`ConnState` is released when its connection
ends (its record packed into a row, :mod:`.conntable`), and a :class:`SessionState` remembers,
per packet id and direction, only the row of the last finished exchange (:class:`DoneIndex`: at
most one per packet id and direction, the protocol's own bound, to let a late acknowledgement or
a DUP re-send join the exchange it belongs to), and is dropped after its idle timeout.

Directions are ints here (0 = c2b, 1 = b2c) and exchange keys are ``direction << 16 | packet_id``:
one dict lookup on an int per acknowledgement.
"""

from __future__ import annotations

from array import array
from typing import Final

from .records import NO_TS, AnomalyRecord, Connection, Reconnect, Session

__all__ = ["B2C", "C2B", "RELEASED", "ConnState", "DoneIndex", "LatencyHistogram", "OpenExchange",
           "SessionState"]

C2B: Final = 0
B2C: Final = 1
#: Keys a :class:`DoneIndex` keeps as pairs in a small array, then in a dict, before it turns
#: into one array over the key space.
DONE_SMALL_LIMIT: Final = 8
DONE_DICT_LIMIT: Final = 4096


class _AckSteps:
    """The acknowledgement steps of an open exchange (first and last time, count, reason code,
    time on the wire of each of PUBACK, PUBREC, PUBREL, PUBCOMP): made at its first
    acknowledgement, so that an exchange still waiting for one (10^5 of them in a hostile
    capture, issue 11 §9) does not carry 20 unset fields."""

    __slots__ = ("n_puback", "n_pubcomp", "n_pubrec", "n_pubrel", "puback_reason",
                 "pubcomp_reason", "pubrec_reason", "pubrel_reason", "t_puback",
                 "t_puback_last", "t_pubcomp", "t_pubcomp_last", "t_pubrec", "t_pubrec_last",
                 "t_pubrel", "t_pubrel_last", "wire_puback", "wire_pubcomp", "wire_pubrec",
                 "wire_pubrel")

    def __init__(self) -> None:
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
        #: Time on the wire (ns) of each step's first packet; 0 when it fit in one frame.
        self.wire_puback = 0
        self.wire_pubrec = 0
        self.wire_pubrel = 0
        self.wire_pubcomp = 0


#: The unset acknowledgement steps, read through while an exchange has none (never written).
_NO_ACKS: Final = _AckSteps()

# Where the small fields of an open exchange sit in its ``bits`` (one int, not nine): the key
# (``direction << 16 | packet_id``) in the low 17 bits, then the rest.
_KEY_MASK: Final = 0x1FFFF
_QOS_SHIFT: Final = 17
_RETAIN_SHIFT: Final = 19
_DUP_SHIFT: Final = 20
_STEP_SHIFT: Final = 21
_OUTCOME_SHIFT: Final = 24
_SPANS_SHIFT: Final = 27


class OpenExchange:
    """One QoS 1/2 exchange whose handshake is not finished yet.

    Attribute names are the column names of :data:`~.records.EXCHANGE_COLUMNS` (the row written
    when it finishes, :meth:`detail_row` or :meth:`report_row`, is read off them in column
    order), plus ``key``; ``content`` is the hash of topic and payload (tells a re-send from a
    reused packet id).

    Small, because a hostile capture holds 10^5 of them at once (issue 11 §9): 15 fields
    (about 170 bytes compiled, 400 before). The nine small ones (direction, QoS, packet id,
    retain, first DUP, last step, outcome, spans reconnect; ``key`` is the first two) share one
    int, ``bits``, read and written through properties of their column names; the 20 fields of
    the acknowledgement steps are an :class:`_AckSteps` made at the first acknowledgement
    (reading one before gives its unset value).
    """

    __slots__ = ("_acks", "bits", "conn_id", "content", "ex_id", "frame", "last_conn_id",
                 "n_dup", "n_publish", "payload_len", "session", "t_end", "t_publish",
                 "t_publish_last", "topic", "wire_publish")

    def __init__(self, ex_id: int, session: int, conn_id: int, direction: int, qos: int,
                 packet_id: int, topic: int, payload_len: int, retain: int,
                 dup: int, frame: int, ts: int, content: int, key: int) -> None:
        assert key == (direction << 16) | packet_id
        self.ex_id = ex_id
        self.session = session
        self.conn_id = conn_id
        self.last_conn_id = conn_id
        self.bits = (key | qos << _QOS_SHIFT | (retain & 1) << _RETAIN_SHIFT
                     | (dup & 1) << _DUP_SHIFT)
        self.topic = topic
        self.payload_len = payload_len
        self.frame = frame
        self.t_publish = ts
        self.t_publish_last = ts
        self.n_publish = 1
        self.n_dup = dup
        self.t_end = NO_TS
        self.content = content
        #: Time on the wire (ns) of the PUBLISH; 0 when it fit in one frame.
        self.wire_publish = 0
        self._acks: _AckSteps | None = None

    # -- the small fields, packed in ``bits`` ----------------------------------------------------
    def _set_bits(self, shift: int, width_mask: int, value: int) -> None:
        self.bits = (self.bits & ~(width_mask << shift)) | ((value & width_mask) << shift)

    @property
    def key(self) -> int:
        return self.bits & _KEY_MASK

    @property
    def packet_id(self) -> int:
        return self.bits & 0xFFFF

    @property
    def direction(self) -> int:
        return (self.bits >> 16) & 1

    @property
    def qos(self) -> int:
        return (self.bits >> _QOS_SHIFT) & 3

    @property
    def retain(self) -> int:
        return (self.bits >> _RETAIN_SHIFT) & 1

    @property
    def dup_first(self) -> int:
        return (self.bits >> _DUP_SHIFT) & 1

    @property
    def last_step(self) -> int:
        return (self.bits >> _STEP_SHIFT) & 7

    @last_step.setter
    def last_step(self, value: int) -> None:
        self._set_bits(_STEP_SHIFT, 7, value)

    @property
    def outcome(self) -> int:
        return (self.bits >> _OUTCOME_SHIFT) & 7

    @outcome.setter
    def outcome(self, value: int) -> None:
        self._set_bits(_OUTCOME_SHIFT, 7, value)

    @property
    def spans_reconnect(self) -> int:
        return (self.bits >> _SPANS_SHIFT) & 1

    @spans_reconnect.setter
    def spans_reconnect(self, value: int) -> None:
        self._set_bits(_SPANS_SHIFT, 1, value)

    @property
    def dup_after_complete(self) -> int:
        """Always 0 while open (counted on the finished row, :meth:`ExchangeTracker.end`)."""
        return 0

    # -- the acknowledgement steps ---------------------------------------------------------------
    @property
    def acks(self) -> _AckSteps:
        """The acknowledgement steps, to write (made on first use)."""
        a = self._acks
        if a is None:
            a = self._acks = _AckSteps()
        return a

    @property
    def steps(self) -> _AckSteps:
        """The acknowledgement steps, to read (the shared unset ones when there are none)."""
        a = self._acks
        return _NO_ACKS if a is None else a

    @property
    def t_puback(self) -> int:
        return self.steps.t_puback

    @property
    def t_puback_last(self) -> int:
        return self.steps.t_puback_last

    @property
    def n_puback(self) -> int:
        return self.steps.n_puback

    @property
    def puback_reason(self) -> int:
        return self.steps.puback_reason

    @property
    def wire_puback(self) -> int:
        return self.steps.wire_puback

    @property
    def t_pubrec(self) -> int:
        return self.steps.t_pubrec

    @property
    def t_pubrec_last(self) -> int:
        return self.steps.t_pubrec_last

    @property
    def n_pubrec(self) -> int:
        return self.steps.n_pubrec

    @property
    def pubrec_reason(self) -> int:
        return self.steps.pubrec_reason

    @property
    def wire_pubrec(self) -> int:
        return self.steps.wire_pubrec

    @property
    def t_pubrel(self) -> int:
        return self.steps.t_pubrel

    @property
    def t_pubrel_last(self) -> int:
        return self.steps.t_pubrel_last

    @property
    def n_pubrel(self) -> int:
        return self.steps.n_pubrel

    @property
    def pubrel_reason(self) -> int:
        return self.steps.pubrel_reason

    @property
    def wire_pubrel(self) -> int:
        return self.steps.wire_pubrel

    @property
    def t_pubcomp(self) -> int:
        return self.steps.t_pubcomp

    @property
    def t_pubcomp_last(self) -> int:
        return self.steps.t_pubcomp_last

    @property
    def n_pubcomp(self) -> int:
        return self.steps.n_pubcomp

    @property
    def pubcomp_reason(self) -> int:
        return self.steps.pubcomp_reason

    @property
    def wire_pubcomp(self) -> int:
        return self.steps.wire_pubcomp

    def detail_row(self) -> tuple[int, ...]:
        """The row of :data:`~.records.EXCHANGE_COLUMNS` (in that order: a test holds the two
        together). Written out rather than read by name: compiled, these are direct reads."""
        a = self.steps
        return (self.ex_id, self.session, self.conn_id, self.last_conn_id, self.direction,
                self.qos, self.packet_id, self.topic, self.payload_len, self.retain,
                self.dup_first, self.frame, self.t_publish, self.t_publish_last, self.n_publish,
                self.n_dup, a.t_puback, a.t_puback_last, a.n_puback,
                a.puback_reason, a.t_pubrec, a.t_pubrec_last, a.n_pubrec,
                a.pubrec_reason, a.t_pubrel, a.t_pubrel_last, a.n_pubrel,
                a.pubrel_reason, a.t_pubcomp, a.t_pubcomp_last, a.n_pubcomp,
                a.pubcomp_reason, self.t_end, self.outcome, self.last_step,
                self.spans_reconnect, 0, self.content,
                self.wire_publish, a.wire_puback, a.wire_pubrec, a.wire_pubrel,
                a.wire_pubcomp)

    def report_row(self, broker: int) -> tuple[int, ...]:
        """The row of :data:`~.records.REPORT_EXCHANGE_COLUMNS` (likewise), with the code of
        the exchange's broker."""
        a = self.steps
        return (self.conn_id, self.qos, self.t_publish, self.n_publish, self.n_dup,
                a.t_puback, a.t_pubrec, a.n_pubrec, a.t_pubrel, a.n_pubrel,
                a.t_pubcomp, self.t_end, self.outcome, self.last_step, self.content, broker)


class LatencyHistogram:
    """Counts of latencies on a log scale, 8 buckets per octave (each 12 % wide), for a
    quantile known only at the end (the diagnoses' percentile) in 4 KiB whatever the traffic.
    Kept by the exchange tracker (compiled) so that an exchange costs one count."""

    __slots__ = ("counts", "n")
    SUB: Final = 3

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (64 << self.SUB)
        self.n = 0

    @staticmethod
    def bucket(ns: int) -> int:
        if ns <= 0:
            return 0
        b = ns.bit_length()
        sub = LatencyHistogram.SUB
        top = (ns >> (b - 1 - sub)) if b > sub else ns << (sub + 1 - b)
        return (b << sub) | (top & ((1 << sub) - 1))

    @staticmethod
    def high(k: int) -> int:
        """The upper edge of bucket ``k`` (ns)."""
        sub = LatencyHistogram.SUB
        b, frac = k >> sub, k & ((1 << sub) - 1)
        if b == 0:
            return 0
        return (((1 << sub) + frac + 1) << (b - 1)) >> sub

    def add(self, ns: int) -> None:
        self.counts[min(self.bucket(ns), len(self.counts) - 1)] += 1
        self.n += 1

    def quantile(self, q: float) -> int:
        """The latency at quantile ``q`` (0-100): the upper edge of its bucket; 0 when empty."""
        if not self.n:
            return 0
        rank = q / 100 * self.n
        seen = 0
        for k, c in enumerate(self.counts):
            seen += c
            if c and seen >= rank:
                return self.high(k)
        return 0


class DoneIndex:
    """Exchange key (``direction << 16 | packet_id``) -> row of the last finished exchange.

    Three sizes, by how many keys it holds. Up to ``SMALL_LIMIT`` keys, (key, row) pairs in one
    int64 array searched in order: most sessions finish a handful of exchanges, and an array of
    one pair costs 80 bytes where a dict costs 232 (100,000 sessions of one exchange each, issue
    11 §9). Then a dict; past ``DICT_LIMIT`` keys one int32 array over the whole key space
    (512 KiB), which costs 4 bytes a key where a dict entry with two int objects costs about
    100. Busy sessions cycle through all 65535 ids, and a client re-sending thousands of
    messages after a reconnect needs every one of them remembered.
    """

    __slots__ = ("_arr", "_dict", "_small")
    SMALL_LIMIT: Final = DONE_SMALL_LIMIT
    DICT_LIMIT: Final = DONE_DICT_LIMIT

    def __init__(self) -> None:
        #: key, row, key, row, ... (None once it has turned into the dict).
        self._small: array[int] | None = array("q")
        self._dict: dict[int, int] | None = None
        self._arr: array[int] | None = None

    def get(self, key: int) -> int | None:
        small = self._small
        if small is not None:
            for i in range(0, len(small), 2):
                if small[i] == key:
                    return small[i + 1]
            return None
        d = self._dict
        if d is not None:
            return d.get(key)
        arr = self._arr
        assert arr is not None
        row = arr[key]
        return None if row < 0 else row

    def put(self, key: int, row: int) -> None:
        small = self._small
        if small is not None:
            n = len(small)
            for i in range(0, n, 2):
                if small[i] == key:
                    small[i + 1] = row
                    return
            if n < 2 * DONE_SMALL_LIMIT:
                small.append(key)
                small.append(row)
                return
            self._dict = {small[i]: small[i + 1] for i in range(0, n, 2)}
            self._small = None
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
        small = self._small
        if small is not None:
            for i in range(0, len(small), 2):
                if small[i] == key:
                    if small[i + 1] == row:
                        del small[i:i + 2]
                    return
            return
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
        if self._small is not None:
            return len(self._small) // 2
        if self._dict is not None:
            return len(self._dict)
        assert self._arr is not None
        return len(self._arr) - self._arr.count(-1)


class SessionState:
    """A session being followed: its record, its open exchanges and its connections."""

    __slots__ = ("abandoned_pending", "anonymous", "broker", "code", "conn", "done",
                 "idle_since", "intervals", "key", "last_conn_id", "open", "persistent", "rec",
                 "t_first", "t_last")
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
        #: The connection currently carrying the session, and the id of the last one attached
        #: (-1: none; once it has ended, its record is a row of the connection table).
        self.conn: ConnState | None = None
        self.last_conn_id = -1
        #: Whether the session outlives its connection (clean session 0 / session expiry > 0).
        self.persistent = False
        #: t_open, t_close (NO_TS: not closed) of each connection, flat: who was online when
        #: (16 bytes a connection, not a list of two boxed ints).
        self.intervals: array[int] = array("q")
        #: Exchanges abandoned when the last connection closed, for the next Reconnect.
        self.abandoned_pending = 0
        #: The record's t_first and t_last, unboxed while running (NO_TS: none yet), and when
        #: its last connection ended (NO_TS: it has one, or it was dropped).
        self.t_first = NO_TS
        self.t_last = NO_TS
        self.idle_since = NO_TS

    def presence(self, ts: int, grace_ns: int) -> int:
        """1 if a connection of the session was open at ``ts`` and for ``grace_ns`` after it,
        3 if one was open at ``ts`` but ended within the grace, 2 if none was open (the
        ``reason`` codes of :data:`~.records.DELIVERY_REASONS`)."""
        iv = self.intervals
        for i in range(0, len(iv), 2):
            start, end = iv[i], iv[i + 1]
            if start <= ts and (end == NO_TS or ts <= end):
                return 1 if end == NO_TS or end - ts >= grace_ns else 3
        return 2


#: What a released session's slot holds (report mode, :mod:`.sessions`): no connection, no
#: open exchange, never idle, so every walk of the sessions passes over it.
RELEASED: Final = SessionState("", -1, None, True, -1, "")


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
        #: Where this connection's (t_open, t_close) starts in its session's ``intervals``
        #: (-1: not attached to a session).
        self.interval = -1

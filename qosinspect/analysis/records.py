"""The records the analysis produces, and the packed row stores that hold the numerous ones.

Two kinds of storage, chosen by how many of each a capture makes:

- **Few per capture** (connections, sessions, reconnections, anomalies): plain ``slots``
  dataclasses, kept as objects. A capture has thousands of connections at most.
- **Many per capture** (exchanges, deliveries, packets): one per PUBLISH or per packet, so a
  1,000,000-packet capture makes up to a million of them. As Python objects they would cost
  500+ bytes each (every timestamp above 2**30 is its own 32-byte int), far beyond the 150 MB
  budget. Finished ones are therefore packed into a :class:`RowStore`: one ``struct``-packed row
  per record, 1 to 8 bytes per value, which numpy and pandas later view without copying. Strings
  (topics, client ids) are interned once in an :class:`Interner` and stored as int32 codes, which
  become a pandas ``category`` directly. Only *open* exchanges live as objects, and those are
  bounded (see :mod:`.correlate`).

:class:`Exchange` and :class:`Delivery` are the typed, per-row views of those stores, made on
demand (``CorrelationResult.exchange_objects()``), for tests and for a live driver that wants
objects.

Missing values in a store are sentinels: ``NO_TS`` (the int64 minimum, which numpy reads as NaT)
for timestamps, ``-1`` for ids, codes and reason codes.

Writing rows needs only the standard library (the live broker and client may use it); reading
them back as arrays imports numpy.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ..mqtt.transitions import Step

__all__ = [
    "BATCH",
    "DELIVERY_COLUMNS",
    "DELIVERY_REASONS",
    "DELIVERY_STATUSES",
    "END_CAUSES",
    "EXCHANGE_COLUMNS",
    "NO_TS",
    "OUTCOMES",
    "PACKET_COLUMNS",
    "PACKET_TYPE_NAMES",
    "Q0_COLUMNS",
    "REPORT_EXCHANGE_COLUMNS",
    "STEPS",
    "TCP_RETRANSMISSION_COLUMNS",
    "AnomalyRecord",
    "Connection",
    "Delivery",
    "Exchange",
    "Interner",
    "Reconnect",
    "RowSink",
    "RowStore",
    "Session",
    "iter_rows",
]

#: "No timestamp": the int64 minimum, which is NaT when viewed as datetime64[ns].
NO_TS = -(2**63)

#: Exchange outcomes, in the order of their int codes in the stores. ``open_at_end``: still open
#: when the capture ended (its connection too); "incomplete" is the umbrella word (open_at_end,
#: abandoned, evicted) in the report and in ``flows --outcome incomplete``.
OUTCOMES = ("open", "complete", "complete_after_reconnect", "open_at_end", "abandoned",
            "refused", "protocol_error", "evicted")
#: The last step an exchange reached, in protocol order (the transition table's steps).
STEPS = tuple(step.name.lower() for step in Step)
#: How a connection ended (``Connection.end``).
END_CAUSES = ("disconnect", "fin", "rst", "idle", "keepalive_expired", "taken_over",
              "end_of_capture")
#: ``Delivery.status`` codes.
DELIVERY_STATUSES = ("delivered", "duplicate", "not_delivered")
#: ``Delivery.reason`` codes for not-delivered rows (``""`` otherwise).
DELIVERY_REASONS = ("", "subscriber_connected", "subscriber_offline", "subscriber_left")
PACKET_TYPE_NAMES = ("RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
                     "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
                     "PINGRESP", "DISCONNECT", "AUTH")

_Q = "q"   # int64: timestamps, ids that grow with traffic
_I = "i"   # int32: codes, counts, packet ids (-1 = none)
_B = "b"   # int8: flags, small enums

#: Columns of a finished QoS 1/2 exchange: (name, struct typecode, default).
EXCHANGE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ex_id", _Q, -1), ("session", _I, -1), ("conn_id", _I, -1),
    ("last_conn_id", _I, -1), ("direction", _B, 0), ("qos", _B, 0), ("packet_id", _I, -1),
    ("topic", _I, -1), ("payload_len", _I, -1), ("retain", _B, 0), ("dup_first", _B, 0),
    ("frame", _I, 0),
    ("t_publish", _Q, NO_TS), ("t_publish_last", _Q, NO_TS), ("n_publish", _I, 1),
    ("n_dup", _I, 0),
    ("t_puback", _Q, NO_TS), ("t_puback_last", _Q, NO_TS), ("n_puback", _I, 0),
    ("puback_reason", _I, -1),
    ("t_pubrec", _Q, NO_TS), ("t_pubrec_last", _Q, NO_TS), ("n_pubrec", _I, 0),
    ("pubrec_reason", _I, -1),
    ("t_pubrel", _Q, NO_TS), ("t_pubrel_last", _Q, NO_TS), ("n_pubrel", _I, 0),
    ("pubrel_reason", _I, -1),
    ("t_pubcomp", _Q, NO_TS), ("t_pubcomp_last", _Q, NO_TS), ("n_pubcomp", _I, 0),
    ("pubcomp_reason", _I, -1),
    ("t_end", _Q, NO_TS), ("outcome", _B, 1), ("last_step", _B, 0), ("spans_reconnect", _B, 0),
    ("dup_after_complete", _I, 0), ("content", _Q, 0),
    # time on the wire of each step's first packet: its first byte to the frame completing it
    ("wire_publish", _Q, 0), ("wire_puback", _Q, 0), ("wire_pubrec", _Q, 0),
    ("wire_pubrel", _Q, 0), ("wire_pubcomp", _Q, 0),
)
#: The exchange columns a report needs (``Correlator(detail=False)``): 82 bytes a row instead of
#: the full 183, kept only while the exchange can still be joined by a late acknowledgement and
#: then folded into the :class:`~.aggregate.Aggregate` (a finished exchange's later changes to
#: columns it does not keep, such as ``last_conn_id``, are no-ops); ``broker`` is the code of
#: the exchange's broker (the aggregate's key).
REPORT_EXCHANGE_COLUMNS: tuple[tuple[str, str, int], ...] = (*(
    c for c in EXCHANGE_COLUMNS if c[0] in {
        "conn_id", "qos", "content", "n_publish", "n_dup", "n_pubrec", "n_pubrel", "t_publish",
        "t_puback", "t_pubrec", "t_pubrel", "t_pubcomp", "t_end", "outcome", "last_step"}),
    ("broker", _I, -1))
#: The few columns a QoS 0 exchange needs (the rest take their defaults): a QoS 0 PUBLISH is one
#: packet, and a capture can hold a million of them.
Q0_COLUMNS: tuple[tuple[str, str, int], ...] = tuple(
    c for c in EXCHANGE_COLUMNS if c[0] in {
        "ex_id", "session", "conn_id", "direction", "topic", "payload_len",
        "retain", "dup_first", "frame", "t_publish"})
DELIVERY_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("pub_ex_id", _Q, -1), ("sub_ex_id", _Q, -1), ("publisher", _I, -1),
    ("subscriber", _I, -1), ("topic", _I, -1), ("t_publish", _Q, NO_TS),
    ("t_delivered", _Q, NO_TS), ("pub_qos", _B, 0), ("sub_qos", _B, -1),
    ("granted_qos", _B, -1), ("status", _B, 0), ("reason", _B, 0), ("retain", _B, 0),
)
PACKET_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ts_ns", _Q, NO_TS), ("conn_id", _I, -1), ("direction", _B, 0), ("packet_type", _B, 0),
    ("qos", _B, -1), ("dup", _B, 0), ("retain", _B, 0), ("packet_id", _I, -1),
    ("reason_code", _I, -1), ("wire_len", _I, 0), ("frame", _I, 0), ("ex_id", _Q, -1),
    ("resend", _B, 0), ("topic", _I, -1), ("payload_len", _I, -1),
)
TCP_RETRANSMISSION_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ts_ns", _Q, NO_TS), ("conn_id", _I, -1), ("direction", _B, 0), ("length", _I, 0),
    ("frame", _I, 0),
)


class Interner:
    """Strings to dense int codes (and back): how topics and client ids are stored.

    Codes are handed out in order of first appearance; ``values`` is the category list.
    """

    __slots__ = ("_codes", "values")

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.values: list[str] = []

    def code(self, value: str | None) -> int:
        """The code of ``value`` (-1 for None), adding it if new."""
        if value is None:
            return -1
        c = self._codes.get(value)
        if c is None:
            c = self._codes[value] = len(self.values)
            self.values.append(value)
        return c

    def value(self, code: int) -> str | None:
        return None if code < 0 else self.values[code]

    def __len__(self) -> int:
        return len(self.values)


#: A row store's first chunk, its largest chunk (rows), and how many rows it packs at once.
FIRST_CHUNK_ROWS: Final = 1024
MAX_CHUNK_ROWS: Final = 1 << 16
BATCH: Final = 256


class RowSink(Protocol):
    """Where detail mode hands rows that can no longer change, a block at a time, instead of
    keeping them (``Correlator(sink=...)``; :class:`qosinspect.analysis.spool.RowSpool` writes
    them to Parquet): what keeps a batch worker's memory bounded whatever the capture's length.

    ``take(table, rows)`` gets a numpy structured array with a store's columns (``exchanges``:
    :data:`EXCHANGE_COLUMNS`; ``q0``: :data:`Q0_COLUMNS`; ``deliveries``, ``packets``,
    ``tcp_retransmissions``: theirs), ``block_rows`` rows at most, in the order the rows were
    made final; values resolved only at the end (session and client names, brokers, causes)
    stay codes, mapped when the tables are built."""

    @property
    def block_rows(self) -> int: ...

    def take(self, table: str, rows: Any) -> None: ...


class RowStore:
    """Rows packed with :mod:`struct` into preallocated ``bytearray`` chunks; read back as numpy.

    Why packed rows rather than one ``array.array`` per column: appending a row is then one C call
    (``Struct.pack_into``) instead of one per column, about three times faster on the hot path,
    and a chunk becomes a numpy structured array without a copy (:meth:`chunks`). Why chunks,
    each allocated at its full size (the first small, then doubling up to ``max_chunk_rows``): a
    buffer grown by appending is reallocated again and again, which for a moment holds two copies
    and leaves the allocator fragmented (tens of MB on a large capture). A field of a row
    already written can still be changed in place (:meth:`set`, :meth:`add`), which is how a late
    acknowledgement joins a finished exchange.

    ``append`` takes the values in column order (no dict, no keyword lookup). The hot paths skip
    even that call: they put the row's tuple on :attr:`batch` (a plain list) and call
    :meth:`flush` when it holds ``batch_rows`` rows, which packs them all with one ``pack_into`` of
    a ``batch_rows``-row format; the row index of a tuple on the batch is ``packed + its position``.
    Reading or changing a row flushes first.

    A store whose rows never change once written (QoS 0 exchanges, deliveries, packets, TCP
    retransmissions) can *spill* (:meth:`spill_to`): each chunk, once full, is handed to a
    :class:`RowSink` and dropped, so the store holds one chunk at most; its row indices then
    restart at 0 (nothing reads such a store by row index).
    """

    __slots__ = ("_buf", "_bufs", "_fields", "_left", "_lens", "_off", "_pack", "_pack_batch",
                 "_starts",
                 "batch", "batch_rows", "defaults", "first_chunk_rows",
                 "max_chunk_rows", "names", "packed", "sink", "sink_table", "size", "spec",
                 "spilled")

    def __init__(self, spec: tuple[tuple[str, str, int], ...], *,
                 first_chunk_rows: int = FIRST_CHUNK_ROWS, max_chunk_rows: int = MAX_CHUNK_ROWS,
                 batch_rows: int = BATCH) -> None:
        self.spec = spec
        self.first_chunk_rows = first_chunk_rows
        self.max_chunk_rows = max_chunk_rows
        #: Rows packed at once (the hot paths flush when :attr:`batch` holds this many).
        self.batch_rows = batch_rows
        self.names = tuple(name for name, _, _ in spec)
        self.defaults = {name: default for name, _, default in spec}
        fmt = "<" + "".join(code for _, code, _ in spec)
        st = struct.Struct(fmt)
        self._pack = st.pack_into
        self._pack_batch = struct.Struct("<" + fmt[1:] * batch_rows).pack_into
        self.size = st.size
        #: Rows not packed yet (tuples in column order).
        self.batch: list[tuple[int, ...]] = []
        self._buf = bytearray()
        #: The chunks and the row number each starts at.
        self._bufs: list[bytearray] = []
        self._starts: list[int] = []
        #: Rows each chunk holds when allocated (a released chunk is empty, :meth:`release`).
        self._lens: list[int] = []
        self._left = 0
        self._off = 0
        #: Rows packed into the chunks (the others are on ``batch``).
        self.packed = 0
        fields: dict[str, tuple[struct.Struct, int]] = {}
        offset = 0
        for name, code, _ in spec:
            one = struct.Struct("<" + code)
            fields[name] = (one, offset)
            offset += one.size
        self._fields = fields
        #: Where full chunks go (None: kept), under which table name; rows handed over so far.
        self.sink: RowSink | None = None
        self.sink_table = ""
        self.spilled = 0

    @property
    def rows(self) -> int:
        return self.packed + len(self.batch)

    def spill_to(self, sink: RowSink, table: str) -> None:
        """From now on hand every full chunk (``sink.block_rows`` rows) to ``sink`` as
        ``table`` and drop it (see the class docstring)."""
        self.sink = sink
        self.sink_table = table
        self.first_chunk_rows = self.max_chunk_rows = max(1, sink.block_rows)

    def spill(self) -> None:
        """Hand every row held to the sink now (the end of the input) and drop them."""
        self.flush()
        self._spill()

    def _spill(self) -> None:
        sink = self.sink
        assert sink is not None
        for rows in self._arrays():
            sink.take(self.sink_table, rows)
        self.spilled += self.packed
        self._bufs = []
        self._starts = []
        self._lens = []
        self._buf = bytearray()
        self._left = self._off = self.packed = 0

    def _new_chunk(self) -> None:
        if self.sink is not None and self.packed:
            self._spill()
        n = min(self.max_chunk_rows, max(self.first_chunk_rows, self.packed))
        self._buf = bytearray(n * self.size)
        self._bufs.append(self._buf)
        self._starts.append(self.packed)
        self._lens.append(n)
        self._left = n
        self._off = 0

    def append(self, *values: int) -> int:
        """Add one row (values in column order); returns its row index."""
        batch = self.batch
        batch.append(values)
        row = self.packed + len(batch) - 1
        if len(batch) >= self.batch_rows:
            self.flush()
        return row

    def flush(self) -> None:
        """Pack the rows waiting on :attr:`batch`."""
        batch = self.batch
        size = self.size
        while batch:
            if not self._left:
                self._new_chunk()
            n = min(len(batch), self._left)
            if n == self.batch_rows:
                self._pack_batch(self._buf, self._off, *itertools.chain.from_iterable(batch))
            else:
                pack, buf, off = self._pack, self._buf, self._off
                for i in range(n):
                    pack(buf, off + i * size, *batch[i])
            self._off += n * size
            self._left -= n
            self.packed += n
            del batch[:n]

    def _where(self, row: int) -> tuple[bytearray, int]:
        if self.batch:
            self.flush()
        if not 0 <= row < self.packed:
            raise IndexError(f"row {row} of {self.rows}")
        k = bisect.bisect_right(self._starts, row) - 1
        return self._bufs[k], (row - self._starts[k]) * self.size

    def get(self, name: str, row: int, default: int = 0) -> int:
        """A field of a row (``default`` for a column this store does not have)."""
        field = self._fields.get(name)
        if field is None:
            return default
        one, off = field
        buf, base = self._where(row)
        value: int = one.unpack_from(buf, base + off)[0]
        return value

    def set(self, name: str, row: int, value: int) -> None:
        """Change a field of a row (nothing for a column this store does not have)."""
        field = self._fields.get(name)
        if field is not None:
            one, off = field
            buf, base = self._where(row)
            one.pack_into(buf, base + off, value)

    def put(self, row: int, values: tuple[int, ...]) -> None:
        """Overwrite a whole row already written (values in column order): how a ring of rows
        (the report's finished exchanges, :mod:`.exchanges`) reuses its slots."""
        buf, base = self._where(row)
        if not buf:     # released: allocated again, whole
            k = bisect.bisect_right(self._starts, row) - 1
            buf = self._bufs[k] = bytearray(self._lens[k] * self.size)
        self._pack(buf, base, *values)

    def release(self, row: int) -> None:
        """Free the chunk holding ``row``, whose rows are no longer needed (a ring whose oldest
        rows left it: :mod:`.exchanges`); :meth:`put` allocates it again when it reuses one of
        its rows, and reads skip it until then."""
        self.flush()
        k = bisect.bisect_right(self._starts, row) - 1
        if 0 <= k < len(self._bufs) and self._bufs[k] is not self._buf:
            self._bufs[k] = bytearray()

    def add(self, name: str, row: int, delta: int = 1) -> None:
        self.set(name, row, self.get(name, row) + delta)

    def row(self, row: int) -> dict[str, int]:
        return {name: self.get(name, row) for name in self.names}

    def dtype_descr(self) -> list[tuple[str, str]]:
        """The numpy structured dtype of a row (little-endian, packed)."""
        return [(name, "<" + _NUMPY[code]) for name, code, _ in self.spec]

    def chunks(self) -> list[Any]:
        """The rows as numpy structured arrays, one per chunk, sharing this store's memory
        (numpy is imported here: writing rows needs only the standard library)."""
        self.flush()
        return self._arrays()

    def _arrays(self) -> list[Any]:
        import numpy as np

        if not self._bufs:
            return []
        dtype = np.dtype(self.dtype_descr())
        return [np.frombuffer(b, dtype=dtype, count=end - start)
                for b, start, end in self._live()]

    def _live(self) -> list[tuple[bytearray, int, int]]:
        """Each chunk that holds rows (not released): its buffer, first row and end."""
        ends = [*self._starts[1:], self.packed]
        return [(b, start, end) for b, start, end in zip(self._bufs, self._starts, ends,
                                                         strict=True) if end > start and b]

    def slice(self, start: int, stop: int) -> Any:
        """Rows ``start`` to ``stop`` as one numpy structured array (a view when they are in one
        chunk, a copy otherwise)."""
        import numpy as np

        self.flush()
        dtype = np.dtype(self.dtype_descr())
        parts = []
        for b, first, end in self._live():
            lo, hi = max(start, first), min(stop, end)
            if lo < hi:
                rows = np.frombuffer(b, dtype=dtype, count=end - first)
                parts.append(rows[lo - first:hi - first])
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.zeros(0, dtype=np.dtype(self.dtype_descr()))
        return np.concatenate(parts)

    def view(self) -> Any:
        """All rows as one numpy structured array (a copy when there are several chunks)."""
        import numpy as np

        parts = self.chunks()
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.zeros(0, dtype=np.dtype(self.dtype_descr()))
        return np.concatenate(parts)

    def nbytes(self) -> int:
        """Bytes allocated (chunks are allocated whole)."""
        return sum(len(b) for b in self._bufs)


_NUMPY = {"q": "i8", "i": "i4", "h": "i2", "b": "i1", "B": "u1"}


@dataclass(slots=True)
class Connection:
    """One transport connection and the MQTT connection on it.

    ``end`` is how it ended (:data:`END_CAUSES`): a DISCONNECT wins over the transport close,
    then a session takeover, then keep-alive expiry (no packet from the client for more than
    1.5 x the keep-alive before the close [MQTT-3.1.2-24]), then the transport's own ``fin``,
    ``rst``, ``idle`` or ``end_of_capture``. ``transport_end`` keeps the transport's view.
    ``version_source`` says where ``version`` came from: ``connect``, ``decoder`` or
    ``default`` (a capture that starts mid-session has no CONNECT).
    """

    conn_id: int
    client: str
    broker: str
    transport: str = "tcp"
    sides_known: bool = True
    session: str | None = None
    client_id: str | None = None
    assigned_client_id: str | None = None
    version: int | None = None
    version_source: str = "default"
    keep_alive: int | None = None
    server_keep_alive: int | None = None
    clean_start: bool | None = None
    session_expiry: int | None = None
    username: str | None = None
    password_present: bool = False
    will_topic: str | None = None
    handshake_seen: bool = False
    #: A TCP connection attempt refused before any MQTT (SYN answered by RST, or reset before a
    #: packet): not an MQTT connection, counted apart (``tcp_attempts_refused``).
    attempt: bool = False
    t_open: int | None = None
    t_connect: int | None = None
    t_connack: int | None = None
    connack_code: int | None = None
    session_present: bool | None = None
    t_close: int | None = None
    end: str | None = None
    transport_end: str | None = None
    closed_by: str | None = None
    disconnect_by: str | None = None
    disconnect_reason: int | None = None
    t_disconnect: int | None = None
    t_last_c2b: int | None = None
    t_last_b2c: int | None = None
    n_packets_c2b: int = 0
    n_packets_b2c: int = 0
    n_bytes_c2b: int = 0
    n_bytes_b2c: int = 0
    n_publish_c2b: int = 0
    n_publish_b2c: int = 0
    tcp_retransmissions: int = 0
    stream_gaps: int = 0
    unfinished_at_end: int = 0
    n_before_connect: int = 0

    @property
    def accepted(self) -> bool | None:
        """True when CONNACK accepted the connection (code 0), None if no CONNACK was seen."""
        return None if self.connack_code is None else self.connack_code == 0


@dataclass(slots=True)
class Session:
    """An MQTT session: keyed by client id, it outlives TCP connections.

    Connections without a CONNECT (a capture started mid-session) or with an empty client id
    get a session of their own, keyed ``conn:<conn_id>``, with ``client_id`` None or empty.
    A session lives on one broker: the same client id on two brokers is two sessions (keyed
    ``<client id>@<broker>`` when a capture holds both).
    """

    session: str
    client_id: str | None
    #: The broker endpoint (``host:port``) the session lives on: sessions are per broker.
    broker: str | None = None
    conn_ids: list[int] = field(default_factory=list)
    t_first: int | None = None
    t_last: int | None = None
    persistent: bool | None = None
    n_exchanges_c2b: int = 0
    n_exchanges_b2c: int = 0
    #: MQTT-level re-sends on its exchanges, counted as they are seen (late joins included):
    #: the sum of its exchanges' ``retransmissions``.
    n_resends: int = 0
    #: Connections that ended long ago and left ``conn_ids`` (report mode: a session that
    #: reconnects all day keeps its recent history only; :mod:`.sessions`).
    n_trimmed: int = 0

    @property
    def n_connections(self) -> int:
        return len(self.conn_ids) + self.n_trimmed

    @property
    def n_reconnects(self) -> int:
        return max(0, self.n_connections - 1)


@dataclass(slots=True)
class Reconnect:
    """A session's next connection after a previous one, and what crossed the gap.

    ``cause`` is the previous connection's ``end``; ``gap_ns`` runs from its close (or from the
    takeover) to the new CONNECT. ``unfinished_c2b``/``unfinished_b2c`` count exchanges the old
    connection left open; ``redelivered_publish`` and ``redelivered_pubrel`` count PUBLISH and
    PUBREL resends on the new connection that joined those open exchanges; ``resumed`` how many
    of them completed on the new connection; ``abandoned`` how many the broker or client dropped
    (no session present, or clean start). ``index`` is its ordinal among the reconnections
    found (its row in the reconnects table when rows are kept: report mode keeps the first
    ones); the diagnoses name it so.
    """

    session: str
    client_id: str | None
    prev_conn_id: int
    next_conn_id: int
    t_drop: int | None
    t_connect: int
    cause: str | None
    disconnect_reason: int | None
    clean_start: bool | None
    session_present: bool | None = None
    unfinished_c2b: int = 0
    unfinished_b2c: int = 0
    redelivered_publish: int = 0
    redelivered_pubrel: int = 0
    resumed: int = 0
    abandoned: int = 0
    index: int = -1

    @property
    def gap_ns(self) -> int | None:
        return None if self.t_drop is None else self.t_connect - self.t_drop


@dataclass(slots=True)
class AnomalyRecord:
    """Something wrong or suspicious. ``source`` is ``decoder`` (passed through from an
    :class:`~qosinspect.events.Anomaly` or :class:`~qosinspect.events.StreamGap`) or
    ``analysis`` (found here: orphan ack, packet id in use, ...)."""

    ts_ns: int
    kind: str
    detail: str
    source: str
    conn_id: int | None = None
    session: str | None = None
    direction: str | None = None
    frame: int = 0
    packet_id: int | None = None
    ex_id: int | None = None
    severity: str = "anomaly"


@dataclass(slots=True)
class Exchange:
    """One QoS delivery in one direction: a PUBLISH and its acknowledgements.

    Keyed by (session, direction of the PUBLISH, packet id, generation); ``generation`` counts
    earlier exchanges on the same session, direction and packet id (numbered by the result).
    Each step keeps its first and last time and its count, never overwritten: ``t_publish``,
    ``t_publish_last``, ``n_publish`` and likewise for PUBACK, PUBREC, PUBREL, PUBCOMP.
    Timestamps are integer ns, None when the step was not seen.
    """

    ex_id: int
    session: str | None
    client_id: str | None
    conn_id: int
    last_conn_id: int
    direction: str
    qos: int
    packet_id: int | None
    topic: str | None
    payload_len: int
    retain: bool
    dup_first: bool
    frame: int
    t_publish: int | None
    t_publish_last: int | None
    n_publish: int
    n_dup: int
    t_puback: int | None
    t_puback_last: int | None
    n_puback: int
    puback_reason: int | None
    t_pubrec: int | None
    t_pubrec_last: int | None
    n_pubrec: int
    pubrec_reason: int | None
    t_pubrel: int | None
    t_pubrel_last: int | None
    n_pubrel: int
    pubrel_reason: int | None
    t_pubcomp: int | None
    t_pubcomp_last: int | None
    n_pubcomp: int
    pubcomp_reason: int | None
    t_end: int | None
    outcome: str
    last_step: str
    spans_reconnect: bool
    dup_after_complete: int
    content: int = 0
    generation: int = 0
    #: Time on the wire of each step's first packet (ns; 0 when one frame held it).
    wire_publish: int = 0
    wire_puback: int = 0
    wire_pubrec: int = 0
    wire_pubrel: int = 0
    wire_pubcomp: int = 0

    @property
    def retransmissions(self) -> int:
        """MQTT-level resends: extra PUBLISH (with or without DUP), PUBREC and PUBREL."""
        return (self.n_publish - 1 + max(0, self.n_pubrec - 1) + max(0, self.n_pubrel - 1))

    @classmethod
    def from_row(cls, row: dict[str, int], topics: Interner, session: str | None,
                 client_id: str | None) -> Exchange:
        """Rebuild one exchange from a store row (sentinels become None)."""
        kw: dict[str, Any] = dict(row)
        for name, value in row.items():
            if name.startswith("t_"):
                kw[name] = None if value == NO_TS else value
            elif name.endswith("_reason") or name == "packet_id":
                kw[name] = None if value < 0 else value
        kw.update(
            session=session, client_id=client_id, topic=topics.value(row["topic"]),
            direction=("c2b", "b2c")[row["direction"]], retain=bool(row["retain"]),
            dup_first=bool(row["dup_first"]), spans_reconnect=bool(row["spans_reconnect"]),
            outcome=OUTCOMES[row["outcome"]], last_step=STEPS[row["last_step"]])
        return cls(**kw)


@dataclass(slots=True)
class Delivery:
    """A publisher's message matched to what the broker sent a subscriber (end to end).

    ``status``: ``delivered`` (the first copy this subscriber got), ``duplicate`` (another
    exchange carrying a message this subscriber already had), or ``not_delivered`` (a subscriber
    whose subscription matched got nothing within the matching window; ``reason`` says whether it
    was connected at the time, offline, or left within a second of the publication).
    ``sub_qos < pub_qos`` is a QoS downgrade, expected when
    ``granted_qos`` explains it.
    """

    pub_ex_id: int
    sub_ex_id: int | None
    publisher: str | None
    subscriber: str | None
    topic: str | None
    t_publish: int
    t_delivered: int | None
    pub_qos: int
    sub_qos: int | None
    granted_qos: int | None
    status: str
    reason: str
    retain: bool

    @property
    def downgraded(self) -> bool:
        return self.sub_qos is not None and self.sub_qos < self.pub_qos


def iter_rows(store: RowStore) -> Iterator[dict[str, int]]:
    """Every row of a store as a dict (slow; for tests and small captures)."""
    for i in range(store.rows):
        yield store.row(i)

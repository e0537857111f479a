"""Ended connections as packed rows: what the tables and the report need, nothing else.

A connection being followed is a :class:`~.state.ConnState` with its
:class:`~.records.Connection` record: some 900 bytes with the record's boxed timestamps and its
strings (docs/memory.md). Once it has ended (closed, reset, evicted by the decoder, refused) none
of that state is read again except the record's fields, so the session tracker packs it here at
once and drops the objects: one ``struct`` row per connection (about 200 bytes), its strings as
codes (a session by its code, the few words such as ``end`` or ``transport`` and the names such
as a user name interned once), its client endpoint as the one string it needs, and its row found
by ``conn_id`` in an array (8 bytes a connection; ids are dense, the decoder numbers them).

Why rows rather than a lighter object per connection: an object still boxes every timestamp
above 2**30 (32 bytes each, seven of them) and pays a pointer per field; a row stores them in 8
bytes, and the numbers stay exact (``None`` is a sentinel, as in the other stores).

:class:`~.connlist.ConnectionList` is what :attr:`~.correlate.CorrelationResult.connections`
holds: the records made from these rows when read. This module is compiled with mypyc (setup.py);
the sequence views are not (a compiled class cannot derive from ``collections.abc``).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from typing import Final

from .records import NO_TS, Connection, Interner

__all__ = ["ConnectionTable"]

#: Rows per chunk: each chunk is allocated whole (no reallocation while the table grows).
CHUNK_ROWS: Final = 4096
#: conn_ids further than this beyond the dense index go to a dict (a hostile or sparse id).
SPARSE_GAP: Final = 1 << 20
#: Sentinel of an optional small int (keep alive, reason codes, version) and of a code.
NONE: Final = -1
#: ``client_id`` code meaning "the client id of the connection's session" (the usual case:
#: the name is stored once, with the session).
SAME_AS_SESSION: Final = -2
#: ``_base`` of an index holding nothing yet after a compaction (set by the next id placed).
_UNSET: Final = -(2**62)

# Field kinds: how a Connection attribute is stored.
_TS = 0     # int | None, int64 with NO_TS for None
_OPT = 1    # int | None, int64 with -1 for None (small non-negative values)
_INT = 2    # int, int64
_BOOL = 3   # bool, int8
_OPT_BOOL = 4  # bool | None, int8 with -1 for None
_WORD = 5   # str | None from a small vocabulary, int32 code in ``words`` (-1 None)
_NAME = 6   # str | None per client (user name, will topic), int32 code in ``names``

#: The Connection attributes, in row order, with their kind and struct code. ``conn_id``,
#: ``client``, ``session`` and ``client_id`` are stored apart (see :meth:`ConnectionTable.add`).
FIELDS: Final[tuple[tuple[str, int, str], ...]] = (
    ("broker", _WORD, "i"), ("transport", _WORD, "i"), ("sides_known", _BOOL, "b"),
    ("assigned_client_id", _NAME, "i"), ("version", _OPT, "h"),
    ("version_source", _WORD, "i"), ("keep_alive", _OPT, "i"), ("server_keep_alive", _OPT, "i"),
    ("clean_start", _OPT_BOOL, "b"), ("session_expiry", _OPT, "q"), ("username", _NAME, "i"),
    ("password_present", _BOOL, "b"), ("will_topic", _NAME, "i"),
    ("handshake_seen", _BOOL, "b"), ("attempt", _BOOL, "b"), ("t_open", _TS, "q"),
    ("t_connect", _TS, "q"), ("t_connack", _TS, "q"), ("connack_code", _OPT, "i"),
    ("session_present", _OPT_BOOL, "b"), ("t_close", _TS, "q"), ("end", _WORD, "i"),
    ("transport_end", _WORD, "i"), ("closed_by", _WORD, "i"), ("disconnect_by", _WORD, "i"),
    ("disconnect_reason", _OPT, "i"), ("t_disconnect", _TS, "q"), ("t_last_c2b", _TS, "q"),
    ("t_last_b2c", _TS, "q"), ("n_packets_c2b", _INT, "q"), ("n_packets_b2c", _INT, "q"),
    ("n_bytes_c2b", _INT, "q"), ("n_bytes_b2c", _INT, "q"), ("n_publish_c2b", _INT, "q"),
    ("n_publish_b2c", _INT, "q"), ("tcp_retransmissions", _INT, "q"),
    ("stream_gaps", _INT, "q"), ("unfinished_at_end", _INT, "q"),
    ("n_before_connect", _INT, "q"),
)
#: Stored beside the Connection fields: its id, session code, client id code (or
#: SAME_AS_SESSION), broker code, and the open exchanges it left per direction (for the next
#: connection of its session: a Reconnect's ``unfinished_*``).
_EXTRA: Final = (("conn_id", "q"), ("session_code", "i"), ("client_id", "i"),
                 ("broker_code", "i"), ("unfinished_c2b", "q"), ("unfinished_b2c", "q"))
_ROW: Final = struct.Struct("<" + "".join(c for _, c in _EXTRA)
                            + "".join(c for _, _, c in FIELDS))
_N_EXTRA: Final = len(_EXTRA)
#: Column name -> index in an unpacked row.
_INDEX: Final[dict[str, int]] = {
    **{name: i for i, (name, _) in enumerate(_EXTRA)},
    **{name: _N_EXTRA + i for i, (name, _, _) in enumerate(FIELDS)}}


class ConnectionTable:
    """Ended connections, one packed row each (see the module docstring)."""

    __slots__ = ("_base", "_chunks", "_clients", "_dense", "_sparse", "dead", "names", "rows",
                 "words")

    def __init__(self) -> None:
        self._chunks: list[bytearray] = []
        #: Client endpoint (``host:port``) by row: the one per-connection string.
        self._clients: list[str] = []
        #: (conn_id - ``_base``) -> row (-1: none), for dense ids; others in ``_sparse``.
        self._dense: array[int] = array("q")
        self._base = 0
        self._sparse: dict[int, int] = {}
        self.words = Interner()
        self.names = Interner()
        #: Rows written (released ones too, until :meth:`compact`), and rows released.
        self.rows = 0
        self.dead = 0

    def __len__(self) -> int:
        return self.rows - self.dead

    def row_of(self, conn_id: int) -> int:
        """The row of an ended connection, -1 if it has none."""
        dense = self._dense
        i = conn_id - self._base
        if 0 <= i < len(dense):
            return dense[i]
        return self._sparse.get(conn_id, -1)

    def _place(self, conn_id: int, row: int) -> None:
        dense = self._dense
        if self._base == _UNSET:
            # (emptied by :meth:`compact`: the index starts near the next id, not at 0)
            self._base = conn_id - CHUNK_ROWS
        i = conn_id - self._base
        if 0 <= i < len(dense) + SPARSE_GAP:
            if i >= len(dense):
                dense.extend(array("q", [-1]) * (i + 1 - len(dense)))
            dense[i] = row
        else:
            self._sparse[conn_id] = row

    def release(self, conn_id: int) -> None:
        """Forget an ended connection's row (folded into the report's totals by the caller):
        its space is taken back by :meth:`compact`."""
        row = self.row_of(conn_id)
        if row < 0:
            return
        i = conn_id - self._base
        if 0 <= i < len(self._dense):
            self._dense[i] = -1
        else:
            del self._sparse[conn_id]
        self._clients[row] = ""
        self.dead += 1

    def compact(self) -> None:
        """Once more rows are released than held (and at least a chunk's worth), copy the held
        ones into new chunks, with the names they use and an index from the smallest id most
        of them are near: the table's memory follows what it holds, not what it ever held."""
        if self.dead < CHUNK_ROWS or self.dead < self.rows - self.dead:
            return
        ids = list(self.conn_ids())
        new = ConnectionTable()
        new.words = self.words
        # the dense index from the first id after which ids are at least an eighth dense; the
        # few older ones (a connection pinned by a long open exchange) go to the dict
        n = len(ids)
        k = 0
        while k < n and ids[-1] - ids[k] > 8 * (n - k) + CHUNK_ROWS:
            k += 1
        new._base = ids[k] if k < n else _UNSET
        for conn_id in ids:
            new._copy_row(self, self.row_of(conn_id), conn_id)
        self._chunks, self._clients, self._dense = new._chunks, new._clients, new._dense
        self._base, self._sparse, self.names = new._base, new._sparse, new.names
        self.rows, self.dead = new.rows, 0

    def _copy_row(self, src: ConnectionTable, row: int, conn_id: int) -> None:
        """Append ``src``'s row (same words; its names coded again in this table's)."""
        v = list(src.values(row))
        names, src_names = self.names, src.names
        if v[2] >= 0:
            v[2] = names.code(src_names.value(v[2]))
        for i, (_, kind, _) in enumerate(FIELDS):
            if kind == _NAME and v[_N_EXTRA + i] >= 0:
                v[_N_EXTRA + i] = names.code(src_names.value(v[_N_EXTRA + i]))
        new_row = self.rows
        if new_row % CHUNK_ROWS == 0:
            self._chunks.append(bytearray(CHUNK_ROWS * _ROW.size))
        self.rows = new_row + 1
        self._clients.append(src._clients[row])
        self._place(conn_id, new_row)
        _ROW.pack_into(self._chunks[new_row // CHUNK_ROWS], (new_row % CHUNK_ROWS) * _ROW.size,
                       *v)

    def add(self, rec: Connection, session_code: int, session_client_id: str | None,
            broker_code: int, unfinished_c2b: int, unfinished_b2c: int) -> None:
        """Pack a connection's record (again, if it already has a row: a late event on an
        ended connection changed it)."""
        words, names = self.words, self.names
        cid = rec.client_id
        client_code = (SAME_AS_SESSION if session_code >= 0 and cid == session_client_id
                       else names.code(cid))
        values: list[int] = [rec.conn_id, session_code, client_code, broker_code,
                             unfinished_c2b, unfinished_b2c]
        for name, kind, _ in FIELDS:
            v = getattr(rec, name)
            if kind == _WORD:
                values.append(words.code(v))
            elif kind == _NAME:
                values.append(names.code(v))
            elif v is None:
                values.append(NO_TS if kind == _TS else -1)
            else:
                values.append(int(v))
        row = self.row_of(rec.conn_id)
        if row < 0:
            row = self.rows
            if row % CHUNK_ROWS == 0:
                self._chunks.append(bytearray(CHUNK_ROWS * _ROW.size))
            self.rows = row + 1
            self._clients.append(rec.client)
            self._place(rec.conn_id, row)
        _ROW.pack_into(self._chunks[row // CHUNK_ROWS], (row % CHUNK_ROWS) * _ROW.size, *values)

    def values(self, row: int) -> tuple[int, ...]:
        """A row's stored values (codes and sentinels), in :data:`_INDEX` order."""
        return _ROW.unpack_from(self._chunks[row // CHUNK_ROWS], (row % CHUNK_ROWS) * _ROW.size)

    def get(self, conn_id: int, name: str) -> int:
        """One stored value of an ended connection (a code or sentinel, as stored)."""
        row = self.row_of(conn_id)
        if row < 0:
            raise KeyError(conn_id)
        return int(self.values(row)[_INDEX[name]])

    def t_close(self, conn_id: int) -> int | None:
        v = self.get(conn_id, "t_close")
        return None if v == NO_TS else v

    def word(self, conn_id: int, name: str) -> str | None:
        """A string field stored as a word (``end``, ``transport_end``, ...)."""
        return self.words.value(self.get(conn_id, name))

    def record(self, row: int) -> tuple[Connection, int, bool]:
        """The :class:`~.records.Connection` of a row, with its session's code (-1: none) and
        whether its client id is the session's: the caller names both (``session`` and, then,
        ``client_id`` are None in the record)."""
        v = self.values(row)
        scode, ccode = v[1], v[2]
        words, names = self.words, self.names
        same = ccode == SAME_AS_SESSION
        vals: list[object] = []
        for i, (_, kind, _) in enumerate(FIELDS):
            x = v[_N_EXTRA + i]
            if kind == _WORD:
                vals.append(words.value(x))
            elif kind == _NAME:
                vals.append(names.value(x))
            elif kind == _TS:
                vals.append(None if x == NO_TS else x)
            elif kind == _OPT:
                vals.append(None if x < 0 else x)
            elif kind == _BOOL:
                vals.append(bool(x))
            elif kind == _OPT_BOOL:
                vals.append(None if x < 0 else bool(x))
            else:
                vals.append(x)
        # One constructor call, positional: FIELDS are the record's fields in its order, less
        # ``session`` and ``client_id`` after the first three (a test holds them together).
        rec = Connection(v[0], self._clients[row], *vals[:3], None,  # type: ignore[arg-type, call-arg]
                         None if same else names.value(ccode), *vals[3:])
        return rec, scode, same

    def conn_ids(self) -> Iterator[int]:
        """The ids of the ended connections held, ascending."""
        dense, base = self._dense, self._base
        sparse = sorted(self._sparse)
        yield from (i for i in sparse if i < base)
        for i in range(len(dense)):
            if dense[i] >= 0:
                yield base + i
        yield from (i for i in sparse if i >= base)

    def nbytes(self) -> int:
        """Bytes of the rows and the index (not the strings)."""
        return (sum(len(c) for c in self._chunks) + self._dense.itemsize * len(self._dense)
                + 8 * len(self._clients))

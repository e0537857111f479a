"""The views of a result's ended connections: the :class:`~.records.Connection` records as a
sequence, and their brokers as a mapping, made from :class:`~.conntable.ConnectionTable` rows.

:class:`ConnectionList` is what :attr:`~.correlate.CorrelationResult.connections` holds: a
sequence of :class:`~.records.Connection` in ``conn_id`` order, each made when read (the report
reads them a few times, the tables once), so a capture of 100,000 connections never holds
100,000 record objects at once. :class:`ConnBrokers` maps ``conn_id`` to its broker's code from
the same rows. Interpreted (not in setup.py's compiled list): a mypyc class cannot derive from
``collections.abc``, and the work per item is the table's, which is compiled.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

from .conntable import ConnectionTable
from .records import Connection

__all__ = ["ConnBrokers", "ConnectionList"]


class ConnectionList(Sequence[Connection]):
    """The connections of a result, in ``conn_id`` order, each record made when read."""

    def __init__(self, table: ConnectionTable, session_keys: Sequence[str | None],
                 client_ids: Sequence[str | None]) -> None:
        self.table = table
        self.session_keys = session_keys
        self.client_ids = client_ids
        self._order: array[int] | None = None

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self) -> Iterator[Connection]:
        t = self.table
        for conn_id in t.conn_ids():
            yield self._record(t.row_of(conn_id))

    def _record(self, row: int) -> Connection:
        rec, code, same_client = self.table.record(row)
        if code >= 0:
            rec.session = self.session_keys[code]
            if same_client:
                rec.client_id = self.client_ids[code]
        return rec

    @overload
    def __getitem__(self, i: int) -> Connection: ...
    @overload
    def __getitem__(self, i: slice) -> list[Connection]: ...

    def __getitem__(self, i: int | slice) -> Connection | list[Connection]:
        order = self._order
        if order is None:
            order = self._order = array("q", self.table.conn_ids())
        t = self.table
        if isinstance(i, slice):
            return [self._record(t.row_of(cid)) for cid in order[i]]
        return self._record(t.row_of(order[i]))

    def __repr__(self) -> str:
        return f"<ConnectionList of {len(self)} connections>"

    def get(self, conn_id: int) -> Connection | None:
        """The record of the connection ``conn_id`` (None when there is none), made alone:
        what a lookup of a few connections needs without making all of them."""
        row = self.table.row_of(conn_id)
        return self._record(row) if row >= 0 else None


class ConnBrokers(Mapping[int, int]):
    """conn_id -> the code of its broker, read from the table's rows."""

    def __init__(self, table: ConnectionTable) -> None:
        self.table = table

    def __getitem__(self, conn_id: int) -> int:
        return self.table.get(conn_id, "broker_code")

    def __iter__(self) -> Iterator[int]:
        return self.table.conn_ids()

    def __len__(self) -> int:
        return len(self.table)

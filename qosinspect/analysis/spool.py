"""The large tables in bounded memory: rows spooled to scratch Parquet as they become final,
tables built from them a block at a time at the end.

Why: in detail mode the analysis used to keep a row for every exchange, delivery, packet and TCP
retransmission until the end, so a batch worker's memory grew with its capture (183 bytes an
exchange, 40 a packet). A :class:`RowSpool` is the :class:`~.records.RowSink` a batch worker
hands the :class:`~.correlate.Correlator`: the analysis gives it rows that can no longer change
(exchanges that left the joinable window, QoS 0 publishes, decided deliveries, packets, TCP
retransmissions), ``block_rows`` at a time, and it writes them, still as the stores' integer
codes, to one scratch Parquet file per table (one row group per block). What is only known at
the end (session keys after ``name_sessions``, client ids, brokers, causes, the topic list) is
applied when :meth:`RowSpool.frames` reads the file back, one row group at a time, through the
very builders of the in-memory tables (:mod:`.tables`, ``rows=``): the same columns, dtypes and
values, with one block of rows and the end's mappings in memory.

Order: exchanges are a table in ``ex_id`` order, but they leave the window in the order they
*finished* (an exchange may stay open for hours, and those open at the end finish last). So the
spool files each block of exchanges by ``ex_id // block_rows`` (one row group per such bucket
present in the block) and reads a bucket's row groups together, sorted by ``ex_id``: a bucket
holds ``block_rows`` rows at most (ids are unique), so memory stays one block whatever the
order. ``generation`` is numbered over the buckets in order (:class:`~.tables.Generations`).
The other tables keep the order their rows were made in.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import tables
from .correlate import CorrelationResult
from .records import (
    DELIVERY_COLUMNS,
    EXCHANGE_COLUMNS,
    PACKET_COLUMNS,
    TCP_RETRANSMISSION_COLUMNS,
    RowStore,
)

__all__ = ["BLOCK_ROWS", "SPOOLED_TABLES", "RowSpool"]

#: Rows per block (a row group of the scratch file; a block of the final table).
BLOCK_ROWS = 65_536
#: The tables a spool holds, with the store columns of their rows.
_SPECS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "packets": PACKET_COLUMNS,
    "exchanges": EXCHANGE_COLUMNS,
    "deliveries": DELIVERY_COLUMNS,
    "tcp_retransmissions": TCP_RETRANSMISSION_COLUMNS,
}
SPOOLED_TABLES = tuple(_SPECS)


class RowSpool:
    """A :class:`~.records.RowSink` that writes rows to scratch Parquet files in ``folder``
    (see the module docstring); :meth:`frames` reads a table back as DataFrames of at most
    ``block_rows`` rows. Remove the folder with :meth:`remove` when done."""

    def __init__(self, folder: str | Path, block_rows: int = BLOCK_ROWS) -> None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, not {block_rows}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._block_rows = block_rows
        self._dtypes = {name: np.dtype(RowStore(spec).dtype_descr())
                        for name, spec in _SPECS.items()}
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in _SPECS}
        self._pending_rows = dict.fromkeys(_SPECS, 0)
        self._writers: dict[str, pq.ParquetWriter] = {}
        #: Per table, the tag of each row group written (exchanges: its ``ex_id`` bucket).
        self._groups: dict[str, list[int]] = {name: [] for name in _SPECS}
        #: Rows taken per table.
        self.rows = dict.fromkeys(_SPECS, 0)
        self._closed = False

    @property
    def block_rows(self) -> int:
        return self._block_rows

    # -- writing ----------------------------------------------------------------------------

    def take(self, table: str, rows: Any) -> None:
        """Take a block of store rows (copied: the store reuses its memory)."""
        if self._closed:
            raise ValueError("the spool is closed")
        if table == "q0":  # QoS 0 exchanges: the exchanges table's columns
            name, block = "exchanges", tables.full_exchange_rows(rows)
        elif table in _SPECS:
            name, block = table, np.array(rows, dtype=self._dtypes[table])
        else:
            raise ValueError(f"no spooled table {table!r}")
        if not len(block):
            return
        self._pending[name].append(block)
        self._pending_rows[name] += len(block)
        self.rows[name] += len(block)
        if self._pending_rows[name] >= self._block_rows:
            self._write(name)

    def _write(self, name: str) -> None:
        parts = self._pending[name]
        if not parts:
            return
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._pending[name] = []
        self._pending_rows[name] = 0
        if name != "exchanges":
            self._write_group(name, rows, 0)
            return
        rows = rows[np.argsort(rows["ex_id"], kind="stable")]
        buckets = rows["ex_id"] // self._block_rows
        cuts = np.flatnonzero(buckets[1:] != buckets[:-1]) + 1
        for part in np.split(rows, cuts):
            self._write_group(name, part, int(part["ex_id"][0]) // self._block_rows)

    def _write_group(self, name: str, rows: np.ndarray, tag: int) -> None:
        table = pa.table({col: rows[col] for col in rows.dtype.names or ()})
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = pq.ParquetWriter(
                self.folder / f"{name}.parquet", table.schema, compression="none")
        writer.write_table(table, row_group_size=len(rows))
        self._groups[name].append(tag)

    def close(self) -> None:
        """Write what is pending and close the scratch files (:meth:`frames` does it)."""
        if self._closed:
            return
        for name in _SPECS:
            self._write(name)
        for writer in self._writers.values():
            writer.close()
        self._closed = True

    def remove(self) -> None:
        """Close and delete the scratch files."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- reading ----------------------------------------------------------------------------

    def blocks(self, table: str) -> Iterator[np.ndarray]:
        """The rows of ``table`` as store rows (numpy structured arrays), a block at a time,
        in table order (exchanges by ``ex_id``)."""
        self.close()
        groups = self._groups[table]
        if not groups:
            return
        pf = pq.ParquetFile(self.folder / f"{table}.parquet")
        try:
            if table != "exchanges":
                for i in range(len(groups)):
                    yield self._read(pf, table, [i])
                return
            by_bucket: dict[int, list[int]] = {}
            for i, bucket in enumerate(groups):
                by_bucket.setdefault(bucket, []).append(i)
            for bucket in sorted(by_bucket):
                rows = self._read(pf, table, by_bucket[bucket])
                yield rows[np.argsort(rows["ex_id"], kind="stable")]
        finally:
            pf.close()

    def _read(self, pf: pq.ParquetFile, table: str, groups: list[int]) -> np.ndarray:
        t = pf.read_row_groups(groups)
        out = np.empty(t.num_rows, dtype=self._dtypes[table])
        for col in out.dtype.names or ():
            out[col] = t.column(col).to_numpy()
        return out

    def frames(self, table: str, result: CorrelationResult) -> Iterator[pd.DataFrame]:
        """``table`` as DataFrames of at most ``block_rows`` rows (one, empty, when it has no
        rows), built by :mod:`.tables` with the end's mappings of ``result``: together they
        are the table the in-memory analysis builds."""
        maps = tables.TableMaps(result)
        gens = tables.Generations()
        any_rows = False
        for rows in self.blocks(table):
            any_rows = True
            yield self._frame(table, result, rows, maps, gens)
        if not any_rows:
            yield self._frame(table, result, np.zeros(0, dtype=self._dtypes[table]), maps, gens)

    @staticmethod
    def _frame(table: str, r: CorrelationResult, rows: np.ndarray, maps: tables.TableMaps,
               gens: tables.Generations) -> pd.DataFrame:
        if table == "exchanges":
            cols = {name: rows[name] for name in rows.dtype.names or ()}
            cols["generation"] = gens.number(rows["session"], rows["direction"],
                                             rows["packet_id"])
            return tables.exchanges_frame(r, rows=cols, maps=maps)
        if table == "packets":
            return tables.packets_frame(r, rows=rows, maps=maps)
        if table == "deliveries":
            return tables.deliveries_frame(r, rows=rows, maps=maps)
        return tables.tcp_retransmissions_frame(r, rows=rows, maps=maps)

"""The large tables in bounded memory: rows spooled to scratch files as they become final,
tables built from them a block at a time at the end.

Why: in detail mode the analysis used to keep a row for every exchange, delivery, packet and TCP
retransmission until the end, so a batch worker's memory grew with its capture (183 bytes an
exchange, 40 a packet). A :class:`RowSpool` is the :class:`~.records.RowSink` a batch worker
hands the :class:`~.correlate.Correlator`: the analysis gives it rows that can no longer change
(exchanges that left the joinable window, QoS 0 publishes, decided deliveries, packets, TCP
retransmissions), a block at a time, and it appends them, still as the stores' packed integer
rows, to one scratch file per table (a group of rows per write, at most :data:`SCRATCH_ROWS`).
What is only known at the end (session keys after ``name_sessions``, client ids, brokers,
causes, the topic list) is applied when :meth:`RowSpool.frames` reads the file back, a block of
``block_rows`` at a time, through the very builders of the in-memory tables (:mod:`.tables`,
``rows=``): the same columns, dtypes and values, with one block of rows and the end's mappings
in memory; the caller writes each block to the final Parquet file.

Why raw rows and not Parquet for the scratch file: it is private, written once and read once,
in the stores' own layout; reading a Parquet block back through Arrow cost three times the
block in memory (Arrow's buffers, then numpy's), raw rows cost the block (``numpy.fromfile``).

Order: exchanges are a table in ``ex_id`` order, but they leave the window in the order they
*finished* (an exchange may stay open for hours, and those open at the end finish last). So the
spool files each group of exchanges by ``ex_id // block_rows`` (one group of rows per such
bucket present) and reads a bucket's groups together, sorted by ``ex_id``: a bucket
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

#: Rows per block of a final table (at most): a row group of the partition a batch writes.
#: Building and writing a block costs about 1 kB a row at its peak (the DataFrame, Arrow's
#: table, the Parquet encoder): with 65,536 a worker peaked 304 MB on 140,000 exchanges and
#: 338 MB on five times as many; with 16,384, 237 and 242 MB.
BLOCK_ROWS = 16_384
#: Rows buffered before they are appended to the scratch file (about 1.5 MB of exchanges).
SCRATCH_ROWS = 8192
#: The tables a spool holds, with the store columns of their rows.
_SPECS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "packets": PACKET_COLUMNS,
    "exchanges": EXCHANGE_COLUMNS,
    "deliveries": DELIVERY_COLUMNS,
    "tcp_retransmissions": TCP_RETRANSMISSION_COLUMNS,
}
SPOOLED_TABLES = tuple(_SPECS)


class RowSpool:
    """A :class:`~.records.RowSink` that writes rows to raw scratch files in ``folder``
    (see the module docstring); :meth:`frames` reads a table back as DataFrames of at most
    ``block_rows`` rows. Remove the folder with :meth:`remove` when done."""

    def __init__(self, folder: str | Path, block_rows: int = BLOCK_ROWS) -> None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, not {block_rows}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._block_rows = block_rows
        self._scratch_rows = min(block_rows, SCRATCH_ROWS)
        self._dtypes = {name: np.dtype(RowStore(spec).dtype_descr())
                        for name, spec in _SPECS.items()}
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in _SPECS}
        self._pending_rows = dict.fromkeys(_SPECS, 0)
        #: Per table, each group of rows written: its tag (exchanges: the ``ex_id`` bucket),
        #: first row in the file, rows.
        self._groups: dict[str, list[tuple[int, int, int]]] = {name: [] for name in _SPECS}
        self._written = dict.fromkeys(_SPECS, 0)
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
        if self._pending_rows[name] >= self._scratch_rows:
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

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.rows"

    def _write_group(self, name: str, rows: np.ndarray, tag: int) -> None:
        with self._path(name).open("ab") as f:
            f.write(np.ascontiguousarray(rows).tobytes())
        self._groups[name].append((tag, self._written[name], len(rows)))
        self._written[name] += len(rows)

    def close(self) -> None:
        """Write what is pending (:meth:`frames` does it); no row is taken after."""
        if self._closed:
            return
        for name in _SPECS:
            self._write(name)
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
        if table != "exchanges":
            for start in range(0, self._written[table], self._block_rows):
                yield self._read(table, [(start, min(self._block_rows,
                                                     self._written[table] - start))])
            return
        by_bucket: dict[int, list[tuple[int, int]]] = {}
        for bucket, start, n in groups:
            by_bucket.setdefault(bucket, []).append((start, n))
        for bucket in sorted(by_bucket):
            rows = self._read(table, by_bucket[bucket])
            yield rows[np.argsort(rows["ex_id"], kind="stable")]

    def _read(self, table: str, spans: list[tuple[int, int]]) -> np.ndarray:
        """Rows of the scratch file: ``(first row, rows)`` spans, concatenated."""
        dtype = self._dtypes[table]
        parts = [np.fromfile(self._path(table), dtype=dtype, count=n,
                             offset=start * dtype.itemsize) for start, n in spans]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

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

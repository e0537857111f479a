"""One capture in, its partitions of the dataset out: the job a batch runs in each worker.

:func:`analyse_into` runs in a worker process (a local pool's or a Dask worker's) and needs
nothing from the process that sent it but its :class:`Task` (picklable, small): it reads the
capture, writes every table's partition, then the ``captures`` row, or a ``failures`` row
when the capture cannot be analysed. The large tables (exchanges, deliveries, packets, TCP
retransmissions) never sit in its memory whole: the analysis hands their rows to a
:class:`~qosinspect.analysis.spool.RowSpool` as they become final, and each is written to its
partition a block at a time (``Task.block_rows`` rows, a row group each), so a worker's
memory is bounded whatever its capture's length. Nothing escapes it as an exception: a
corrupt capture, a missing file or a bug in the analysis becomes a row and an
:class:`Outcome`, and the batch goes on.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .layout import (
    ANALYSIS_TABLES,
    BOOK_DTYPES,
    TABLES,
    DecoderOptions,
    add_capture_columns,
    publish_partition,
    scratch_dir,
)
from .storage import is_url, place

if TYPE_CHECKING:
    import pandas as pd

    from ..analysis.api import Analysis
    from ..analysis.records import RowSink

__all__ = ["Outcome", "Task", "analyse_into"]


@dataclass(frozen=True)
class Task:
    """What a worker needs to analyse one capture into the dataset at ``root``."""

    root: str
    path: str
    #: The path relative to the folder given (the ``capture`` column).
    capture: str
    sha256: str
    key: str
    options_key: str
    size: int
    options: DecoderOptions
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Rows per block of the large tables (memory against the number of Parquet row groups;
    #: None: :data:`qosinspect.analysis.spool.BLOCK_ROWS`; the tests make it small so that a
    #: small capture spans several blocks).
    block_rows: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a task: ``error`` is None on success; ``partial`` when the capture was
    read up to a defect (its tables hold what came before, and it counts as failed)."""

    capture: str
    key: str
    size: int
    rows: Mapping[str, int]
    error: str | None = None
    partial: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


def analyse_into(task: Task) -> Outcome:
    """Analyse ``task``'s capture and publish its partitions (see the module docstring)."""
    start = time.perf_counter()
    scratch = scratch_dir(task.root, task.key)
    rows: dict[str, int] = {}
    local = task.path
    error: str | None = None
    error_type = ""
    partial = False
    frames = packets = None
    try:
        from ..analysis.spool import BLOCK_ROWS, SPOOLED_TABLES, RowSpool

        spool = RowSpool(scratch / ".spool", task.block_rows or BLOCK_ROWS)
        try:
            with _local_copy(task.path) as local:
                analysis = _analyse(task, local, spool)
            for name in ANALYSIS_TABLES:
                if name == "packets" and not task.options.packets:
                    continue
                if name in SPOOLED_TABLES:
                    rows[name] = _write_blocks(scratch, name,
                                               spool.frames(name, analysis.result), task)
                    continue
                df = (analysis.summary().reset_index() if name == "summary"
                      else getattr(analysis, name))
                rows[name] = _write(scratch, name, df, task)
        finally:
            spool.remove()
        summary = analysis.capture_summary
        frames = getattr(summary, "frames", None)
        packets = getattr(summary, "mqtt_packets", None)
        if analysis.capture_error is not None:
            error, error_type, partial = str(analysis.capture_error), "CaptureError", True
    except Exception as exc:  # every failure is a row, the batch goes on
        rows = {}
        error, error_type = _message(exc), type(exc).__name__
        for child in scratch.iterdir():  # the tables written before the failure
            shutil.rmtree(child, ignore_errors=True)
    if error is not None and local != task.path:  # name the URL, not the download
        error = error.replace(local, task.path)
    if error is None or partial:
        _write(scratch, "captures", _captures_row(task, frames, packets, error), task)
    if error is not None:
        _write(scratch, "failures", _failure_row(task, error_type, error, partial), task)
    publish_partition(task.root, scratch, task.key, TABLES)
    return Outcome(task.capture, task.key, task.size, rows, error, partial,
                   time.perf_counter() - start)


def _analyse(task: Task, path: str, sink: RowSink) -> Analysis:
    """The analysis of the capture's bytes at ``path`` (local: the task's own, or a copy),
    the rows of the large tables handed to ``sink``."""
    import dataclasses

    from ..analysis.api import analyze_capture

    o = task.options
    return analyze_capture(path, ports=o.ports, detect_any_port=o.detect_any_port,
                           mqtt_version=o.mqtt_version,
                           options=dataclasses.replace(o.analysis, packets=o.packets),
                           sink=sink)


@contextlib.contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """A local file with the capture's bytes: the path itself, or for a URL a download into
    a temporary folder (under the capture's own name, so a ``.gz`` stays one), removed after:
    the decoder maps its input, which an object store cannot give."""
    if not is_url(path):
        yield path
        return
    src = place(path)
    with tempfile.TemporaryDirectory(prefix="qosinspect-capture.") as tmp:
        local = str(Path(tmp) / posixpath.basename(src.path))
        src.fs.get_file(src.path, local)
        yield local


def _message(exc: BaseException) -> str:
    """The error as one line for the ``failures`` table; an unexpected exception (a bug, not
    bad input) keeps where it was raised."""
    from ..errors import QosinspectError

    text = str(exc) or type(exc).__name__
    if isinstance(exc, QosinspectError | OSError | ValueError):
        return text
    where = traceback.extract_tb(exc.__traceback__)[-1:]
    return f"{text} (at {where[0].filename}:{where[0].lineno})" if where else text


def _write(scratch: Path, table: str, df: pd.DataFrame, task: Task) -> int:
    """Write one table of the capture (with its capture and tag columns) into ``scratch``."""
    return _write_blocks(scratch, table, iter((df,)), task)


def _write_blocks(scratch: Path, table: str, frames: Iterator[pd.DataFrame], task: Task) -> int:
    """Write one table of the capture given as DataFrames of the same columns (one Parquet
    file, a row group per frame at least), each with its capture and tag columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = scratch / table
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    writer: pq.ParquetWriter | None = None
    try:
        for df in frames:
            t = pa.Table.from_pandas(add_capture_columns(df, task.capture, task.sha256,
                                                         task.tags), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out / "part-0.parquet", t.schema)
            writer.write_table(t)
            n += len(df)
    finally:
        if writer is not None:
            writer.close()
    return n


def _captures_row(task: Task, frames: int | None, packets: int | None,
                  error: str | None) -> pd.DataFrame:
    """The ``captures`` row: what was analysed and with which options (deterministic: the
    same capture gives the same row on any worker, which is how runs compare)."""
    return _book_row("captures", task, frames=frames, mqtt_packets=packets, capture_error=error)


def _failure_row(task: Task, error_type: str, error: str, partial: bool) -> pd.DataFrame:
    return _book_row("failures", task, error_type=error_type, error=error, partial=partial)


def _book_row(table: str, task: Task, **values: object) -> pd.DataFrame:
    """One row of a book-keeping table, with its declared dtypes."""
    import pandas as pd

    values.update(capture_key=task.key, options_key=task.options_key, size_bytes=task.size)
    return pd.DataFrame({col: pd.array([values[col]], dtype=cast(Any, dtype))
                         for col, dtype in BOOK_DTYPES[table].items()})

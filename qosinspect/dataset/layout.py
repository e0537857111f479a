"""Where a batch dataset keeps each table of each capture, and how a run is named.

A dataset is a folder of Parquet files, one folder per table, and in it one Hive-style
partition per analysed capture::

    DATASET/exchanges/capture_key=<sha256[:24]>-<options[:8]>/part-0.parquet
    DATASET/captures/capture_key=.../part-0.parquet      one row: what was analysed, how
    DATASET/failures/capture_key=.../part-0.parquet      one row when it failed

Why a partition per capture: each capture is written by one worker process, alone, so no two
writers ever touch one file (no locks, no shared state between Dask workers), a capture done
again replaces exactly its own files, and Spark, DuckDB or pyarrow read the layout as it is.
The key is the capture's content (sha256) and the options that shape its tables: the same
bytes analysed with the same options are the same partition, whatever the file is called.

Every row carries ``capture`` (the path relative to the folder given), ``capture_sha256`` and
the user's tags as ``tag_<name>`` columns; the tables' own columns and dtypes are the analysis'
(``docs/glossary.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis.options import AnalysisOptions
from .storage import Place, place

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ANALYSIS_TABLES",
    "BOOK_DTYPES",
    "BOOK_TABLES",
    "SCHEMA_VERSION",
    "TABLES",
    "TAG_NAME",
    "TAG_PREFIX",
    "DecoderOptions",
    "add_capture_columns",
    "capture_key",
    "file_sha256",
    "options_key",
    "partition_dir",
    "partition_files",
    "publish_partition",
    "remove_scratch",
    "scratch_dir",
]

#: Bumped when the layout or the added columns change: older partitions are then redone.
SCHEMA_VERSION = 1
#: The analysis' tables a batch writes (``packets`` only when asked), then ``summary``.
ANALYSIS_TABLES = ("packets", "connections", "sessions", "exchanges", "reconnects",
                   "deliveries", "anomalies", "tcp_retransmissions", "undecoded_streams",
                   "summary")
#: The batch's own book-keeping: what was analysed, what failed.
BOOK_TABLES = ("captures", "failures")
#: The declared dtypes of the book-keeping tables (the analysis' are in
#: :data:`qosinspect.analysis.tables.SCHEMAS`).
BOOK_DTYPES: dict[str, dict[str, str]] = {
    "captures": {"capture_key": "string", "options_key": "string", "size_bytes": "Int64",
                 "frames": "Int64", "mqtt_packets": "Int64", "capture_error": "string"},
    "failures": {"capture_key": "string", "options_key": "string", "size_bytes": "Int64",
                 "error_type": "string", "error": "string", "partial": "boolean"},
}
#: Every table of a dataset.
TABLES = ANALYSIS_TABLES + BOOK_TABLES
#: Tag columns are ``tag_<name>``: a tag never collides with a column of the analysis.
TAG_PREFIX = "tag_"
#: What a tag name may be (it becomes a column name that SQL can use unquoted).
TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SCRATCH = ".incoming"


@dataclass(frozen=True)
class DecoderOptions:
    """How captures are decoded (the ``decode``/``report`` options a batch takes)."""

    ports: tuple[int, ...] = (1883,)
    detect_any_port: bool = True
    mqtt_version: int = 4
    #: Whether the per-packet table is written (large: one row per MQTT packet).
    packets: bool = False
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)


def options_key(options: DecoderOptions) -> str:
    """A digest of everything that shapes a capture's tables: the same capture with other
    options is another partition, analysed again."""
    doc = {"schema": SCHEMA_VERSION, **asdict(options)}
    text = json.dumps(doc, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def capture_key(sha256: str, opts_key: str) -> str:
    """The partition name of one capture analysed with one set of options."""
    return f"{sha256[:24]}-{opts_key[:8]}"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (as stored: a gzip capture's compressed bytes); a URL is
    read through fsspec."""
    h = hashlib.sha256()
    where = place(path)
    with where.fs.open(where.path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def partition_dir(root: str | os.PathLike[str], table: str, key: str) -> Place:
    """The folder of one capture's rows of ``table``."""
    return place(root).child(table, f"capture_key={key}")


def partition_files(root: str | os.PathLike[str], table: str) -> dict[str, list[str]]:
    """The Parquet files of ``table`` by capture key (paths on the dataset's file system; an
    empty dict when there are none)."""
    out: dict[str, list[str]] = {}
    base = place(root).child(table)
    if not base.isdir():
        return out
    for path in sorted(base.fs.glob(posixpath.join(base.path, "capture_key=*", "*.parquet"))):
        part = posixpath.basename(posixpath.dirname(path))
        out.setdefault(part.split("=", 1)[1], []).append(path)
    return out


def scratch_dir(root: str | os.PathLike[str], key: str) -> Path:
    """A fresh private local folder to write one capture's files into before they are
    published (a worker that dies half way leaves nothing in the tables): inside a local
    dataset (the move into place is then a rename), in the temporary folder for a URL."""
    where = place(root)
    if where.local:
        path = Path(where.path) / _SCRATCH / f"{key}.{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"qosinspect-{key}."))


def publish_partition(root: str | os.PathLike[str], scratch: Path, key: str,
                      tables: tuple[str, ...]) -> None:
    """Move the files written in ``scratch`` into place, replacing the capture's old
    partitions of ``tables`` (one that has no new file is removed: a capture done again
    that no longer fails loses its ``failures`` row). On a URL the files are uploaded, one
    by one, after the old partition is removed."""
    for table in tables:
        dest = partition_dir(root, table, key)
        src = scratch / table
        if dest.local:
            shutil.rmtree(dest.path, ignore_errors=True)
            if src.is_dir():
                Path(dest.path).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest.path)
            continue
        if dest.fs.exists(dest.path):
            dest.fs.rm(dest.path, recursive=True)
        if src.is_dir():
            for f in sorted(src.rglob("*")):
                if f.is_file():
                    dest.fs.put_file(str(f), dest.child(f.relative_to(src).as_posix()).path)
    shutil.rmtree(scratch, ignore_errors=True)


def remove_scratch(root: str | os.PathLike[str]) -> None:
    """Remove the scratch folder once no worker writes any more (the process that ran the
    batch does it: a worker removing it could pull it from under another's feet)."""
    where = place(root)
    if where.local:
        with contextlib.suppress(OSError):  # not empty: a worker of another batch is writing
            (Path(where.path) / _SCRATCH).rmdir()


def add_capture_columns(df: pd.DataFrame, capture: str, sha256: str,
                        tags: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with ``capture``, ``capture_sha256`` and the ``tag_*`` columns in front (all
    ``string``), the rest as it was."""
    import pandas as pd

    n = len(df)
    front: dict[str, Any] = {"capture": pd.array([capture] * n, dtype="string"),
                             "capture_sha256": pd.array([sha256] * n, dtype="string")}
    for name, value in tags.items():
        front[TAG_PREFIX + name] = pd.array([value] * n, dtype="string")
    head = pd.DataFrame(front, index=df.index)
    return pd.concat([head, df], axis=1)

"""SQL over a dataset: DuckDB reads the Parquet files in place, each table under its name.

Why DuckDB: it runs SQL on Parquet without loading it first (it reads the columns a query
uses, in parallel), so a question over every run (p99 PUBACK latency per firmware per day)
costs a scan, not an import. Each table is a view over its files with ``union_by_name``: the
captures' partitions may differ in their tag columns, which are then null where a capture has
no such tag. Types as DuckDB reads them: categories are ``VARCHAR``, times
``TIMESTAMPTZ_NS``, durations (``latency_*``, ``gap``, ``duration``) ``BIGINT`` nanoseconds
(``latency_ms`` is there in milliseconds).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .layout import BOOK_DTYPES, TABLES
from .reader import capture_names, table_files

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

__all__ = ["QueryError", "connect", "query"]

#: DuckDB's type for a book-keeping column of an empty view (``failures`` of a clean run).
_SQL_TYPES = {"string": "VARCHAR", "Int64": "BIGINT", "boolean": "BOOLEAN"}


class QueryError(ValueError):
    """A query DuckDB refused (syntax, an unknown table or column), with DuckDB's words."""


def connect(root: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of the dataset at ``root``.

    A table without files has no view, except ``captures`` and ``failures``, which are then
    empty views with their columns (a clean run has no failures, and asking is no error).
    """
    import duckdb

    from .reader import Dataset

    where = Dataset(root).place  # a clear error for a folder that is not a dataset
    con = duckdb.connect(":memory:")
    names = capture_names(root)
    for table in TABLES:
        files = table_files(root, table, names)
        if files and not where.local:
            # DuckDB's own S3 reader is an extension it would download, and its fsspec bridge
            # needs calls not every backend has (s3fs: modified()): pyarrow reads the files
            # through fsspec, DuckDB queries the table in memory
            con.register(f"_{table}", _arrow_table(files, where.arrow_fs))
            con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM "_{table}"')
        elif files:
            # a view cannot take parameters: the paths are SQL string literals
            paths = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet([{paths}], '
                        "union_by_name = true, hive_partitioning = false)")
        elif table in BOOK_DTYPES:
            cols = {"capture": "string", "capture_sha256": "string", **BOOK_DTYPES[table]}
            select = ", ".join(f'CAST(NULL AS {_SQL_TYPES[d]}) AS "{c}"' for c, d in cols.items())
            con.execute(f'CREATE VIEW "{table}" AS SELECT {select} WHERE false')
    return con


def _arrow_table(files: list[str], fs: object) -> pa.Table:
    """The files of a table read as one Arrow table (unified schema, as ``read_parquet`` with
    ``union_by_name`` gives), categories as plain strings (what DuckDB reads from Parquet)."""
    import pyarrow as pa

    from .reader import read_conformed, unified_schema

    schema = unified_schema(files, fs)
    t = pa.concat_tables([read_conformed(f, schema, fs) for f in files])
    cols = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in t.columns]
    return pa.Table.from_arrays(cols, names=t.column_names)


def query(root: str | os.PathLike[str], sql: str) -> pd.DataFrame:
    """The result of ``sql`` over the dataset at ``root`` as a DataFrame; a query DuckDB
    cannot run raises :class:`QueryError`."""
    import duckdb

    con = connect(root)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None
    finally:
        con.close()

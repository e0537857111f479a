"""``open(DATASET)``: a batch dataset's tables as pandas DataFrames, or Dask ones.

Each capture's partition was written alone, so two partitions of a table may differ in their
schema: tags that only some captures have, a column that is empty (typeless) in one capture.
The files of a table are read against one schema unified from all of theirs (missing columns
are null), so the concatenation has the analysis' declared dtypes whatever the mix. Rows come
in the order of the captures' names, then as each capture's table has them; ``lazy=True`` gives
one Dask partition per capture with the same rows and dtypes once computed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from .layout import BOOK_DTYPES, TABLES, TAG_PREFIX, partition_files
from .storage import place, reaching

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Dataset", "capture_names", "open_dataset", "read_conformed", "table_files",
           "unified_schema"]


def table_files(root: str | os.PathLike[str], table: str,
                names: Mapping[str, str] | None = None) -> list[str]:
    """The Parquet files of ``table`` (paths on the dataset's file system, see
    :func:`~.storage.place`) in the order of the captures' names (the dataset's row
    order); ``names`` (:func:`capture_names`) when the caller reads several tables, so that
    the book-keeping files are read once, not once per table."""
    parts = partition_files(root, table)
    order = capture_names(root) if names is None else names
    keys = sorted(parts, key=lambda k: (order.get(k, ""), k))
    return [f for k in keys for f in parts[k]]


def capture_names(root: str | os.PathLike[str]) -> dict[str, str]:
    """Capture key -> capture name, from the ``captures`` and ``failures`` rows."""
    import pyarrow.parquet as pq

    names: dict[str, str] = {}
    fs = place(root).arrow_fs
    for table in ("failures", "captures"):
        for key, files in partition_files(root, table).items():
            col = pq.read_table(files[0], columns=["capture"], filesystem=fs).column("capture")
            if len(col):
                names[key] = str(col[0].as_py())
    return names


def unified_schema(files: list[str], fs: Any = None) -> pa.Schema:
    """One schema for every file of a table, each column with a type all its files can take
    (see :func:`_common_type`): ``capture``, ``capture_sha256``, the tags by name, then the
    table's columns in their order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types: dict[str, list[pa.DataType]] = {}
    for f in files:
        for fld in pq.read_schema(f, filesystem=fs):
            types.setdefault(fld.name, []).append(fld.type)
    tags = sorted(n for n in types if n.startswith(TAG_PREFIX))
    order = ["capture", "capture_sha256", *tags]
    order += [n for n in types if n not in order]
    return pa.schema([(name, _common_type(types[name])) for name in order if name in types])


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    """The type of a column over captures. A category column is a dictionary of strings
    everywhere: a capture where it is empty or all missing writes it as ``null`` or
    ``double`` (pandas has no type for the categories of nothing), and those files' values
    are all missing anyway (:func:`read_conformed`)."""
    import pyarrow as pa

    real = [t for t in types if not pa.types.is_null(t)]
    if not real:
        return pa.null()
    if any(pa.types.is_dictionary(t) for t in real):
        return pa.dictionary(pa.int32(), pa.string())
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in real):
        return pa.string()
    merged = pa.unify_schemas([pa.schema([("c", t)]) for t in real],
                              promote_options="permissive")
    return merged.field("c").type


def read_conformed(path: str, schema: pa.Schema, fs: Any = None) -> pa.Table:
    """One file (on ``fs``, pyarrow's ``filesystem=``), conformed to ``schema`` (missing or
    all-missing columns as nulls of the column's type, the others cast)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path, filesystem=fs)
    cols = []
    for f in schema:
        if f.name not in t.column_names or t.column(f.name).null_count == len(t):
            cols.append(pa.nulls(len(t), f.type))
        else:
            cols.append(t.column(f.name).cast(f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _to_pandas(t: pa.Table, table: str) -> pd.DataFrame:
    """A table as pandas with the analysis' declared dtypes (:data:`~qosinspect.analysis.
    tables.SCHEMAS`); the capture and tag columns, added by the batch, as ``string``."""

    from ..analysis.tables import SCHEMAS

    declared = {name: dtype for name, dtype, _ in SCHEMAS.get(table, ())}
    declared.update(BOOK_DTYPES.get(table, {}))
    df: pd.DataFrame = t.to_pandas()
    for col in df.columns:
        name = str(col)
        if name in ("capture", "capture_sha256") or name.startswith(TAG_PREFIX):
            dtype = "string"
        elif name in declared:
            dtype = declared[name]
        else:
            continue
        if str(df[col].dtype) != dtype:
            df[col] = df[col].astype(cast(Any, dtype))
        if dtype == "category":
            # one dtype for the categories of every partition (Dask unions them), the
            # same as pandas gives a non-empty one ("str"; an empty one would be float)
            df[col] = df[col].cat.set_categories(df[col].cat.categories.astype("str"))
    return df


def _read_pandas(path: str, schema: pa.Schema, table: str, fs: Any = None) -> pd.DataFrame:
    """One file as pandas (a lazy dataset's partition)."""
    return _to_pandas(read_conformed(path, schema, fs), table)


class Dataset(Mapping[str, Any]):
    """The tables of a dataset by name (also as attributes: ``ds.exchanges``), each read on
    first use; pandas DataFrames, or Dask DataFrames when ``lazy``. A table no capture has
    (``failures`` of a clean run, ``packets`` unless asked for) is an empty DataFrame."""

    def __init__(self, root: str | os.PathLike[str], *, lazy: bool = False) -> None:
        self.place = place(root)
        self.root = self.place.url
        self.lazy = lazy
        self._cache: dict[str, Any] = {}
        self._names: dict[str, str] | None = None
        with reaching(root):
            found = self.place.isdir() and any(self.place.child(t).isdir() for t in TABLES)
        if not found and not self.place.isdir():
            raise FileNotFoundError(f"{root}: no such dataset (a folder made by "
                                    "qosinspect batch)")
        if not found:
            raise FileNotFoundError(f"{root}: not a dataset (no table folder in it)")

    def __repr__(self) -> str:
        return f"<Dataset {self.root} ({'lazy' if self.lazy else 'pandas'})>"

    def __getitem__(self, name: str) -> Any:
        if name not in TABLES:
            raise KeyError(f"{name!r}: a dataset's tables are {', '.join(TABLES)}")
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in TABLES:
            raise AttributeError(name)
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(TABLES)

    def __len__(self) -> int:
        return len(TABLES)

    def _load(self, name: str) -> Any:
        import pandas as pd
        import pyarrow as pa

        if self._names is None:
            self._names = capture_names(self.root)
        files = table_files(self.root, name, self._names)
        if not files:
            empty = pd.DataFrame()
            if self.lazy:
                import dask.dataframe as dd

                return dd.from_pandas(empty, npartitions=1)  # type: ignore[no-untyped-call]
            return empty
        fs = self.place.arrow_fs
        schema = unified_schema(files, fs)
        if self.lazy:
            import dask.dataframe as dd

            meta = _to_pandas(schema.empty_table(), name)
            return dd.from_map(  # type: ignore[no-untyped-call]
                _read_pandas, files, schema=schema, table=name, fs=fs, meta=meta,
                enforce_metadata=False)
        return _to_pandas(pa.concat_tables([read_conformed(f, schema, fs) for f in files]), name)


def open_dataset(root: str | os.PathLike[str], lazy: bool = False) -> Dataset:
    """The dataset at ``root`` (see :class:`Dataset`)."""
    return Dataset(root, lazy=lazy)

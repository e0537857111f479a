"""Many captures as one dataset: ``qosinspect batch`` writes it, :func:`open` and
``qosinspect query`` read it.

- :mod:`.layout`: where each table of each capture lives, the keys of incremental runs.
- :mod:`.sources`: which captures (files, folders, globs) and their tags.
- :mod:`.worker`: one capture in, its partitions out (runs in worker processes).
- :mod:`.runner`: the tasks and the executor (local processes or a Dask cluster).
- :mod:`.reader`: the tables back as pandas or Dask DataFrames.
- :mod:`.query`: SQL over the Parquet files with DuckDB.

This package sits above the analysis (it imports :mod:`qosinspect.analysis`, never the
reverse) and beside :mod:`qosinspect.report`, whose output layer writes its Parquet files.
"""

from __future__ import annotations

from .layout import TABLES, DecoderOptions
from .reader import Dataset, open_dataset
from .runner import BatchResult, plan, run_batch
from .sources import expand_captures

__all__ = ["TABLES", "BatchResult", "Dataset", "DecoderOptions", "expand_captures", "open",
           "open_dataset", "plan", "run_batch"]

#: ``qosinspect.dataset.open(DATASET, lazy=False)``: the tables of a dataset.
open = open_dataset

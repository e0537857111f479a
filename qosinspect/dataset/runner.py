"""``run_batch``: many captures analysed in parallel into one dataset.

The work is one :func:`~.worker.analyse_into` call per capture, handed to a
:class:`concurrent.futures.Executor`: a :class:`~concurrent.futures.ProcessPoolExecutor` on the
local cores (processes: the analysis is CPU-bound Python, threads would share one core), or a
Dask distributed cluster's executor (``Client(address).get_executor()``), or none at all
(``jobs=1``: in this process, what the benchmark calls serial). The scheduling is theirs; this
module only decides what needs doing (incremental: a capture whose sha256 and options already
have a ``captures`` row is skipped) and counts what came back.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .layout import (
    DecoderOptions,
    capture_key,
    file_sha256,
    options_key,
    partition_files,
    remove_scratch,
)
from .sources import CaptureFile, tags_for
from .storage import place, reaching
from .worker import Outcome, Task, analyse_into

__all__ = ["BatchResult", "ClusterError", "done_keys", "plan", "run_batch"]

#: How long to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT = "10s"


class ClusterError(RuntimeError):
    """The Dask cluster could not be reached (its own words)."""


@dataclass
class BatchResult:
    """What a batch did: the outcome of each capture analysed, the captures skipped."""

    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def bytes_read(self) -> int:
        return sum(o.size for o in self.outcomes)

    def rows(self) -> dict[str, int]:
        """Rows written per table, over every capture analysed."""
        out: dict[str, int] = {}
        for o in self.outcomes:
            for table, n in o.rows.items():
                out[table] = out.get(table, 0) + n
        return out


def done_keys(root: str | os.PathLike[str]) -> set[str]:
    """The capture keys that have a ``captures`` row (analysed, possibly up to a defect)."""
    return set(partition_files(root, "captures"))


def plan(captures: Sequence[CaptureFile], root: str | os.PathLike[str],
         options: DecoderOptions, *, tags: Mapping[str, str] | None = None,
         tags_csv: Mapping[str, Mapping[str, str]] | None = None,
         force: bool = False) -> tuple[list[Task], list[str]]:
    """The tasks to run and the names of the captures skipped (already in the dataset with
    these options; all are run with ``force``). The same bytes given twice run once."""
    with reaching(root):
        return _plan(captures, root, options, tags=tags, tags_csv=tags_csv, force=force)


def _plan(captures: Sequence[CaptureFile], root: str | os.PathLike[str],
          options: DecoderOptions, *, tags: Mapping[str, str] | None,
          tags_csv: Mapping[str, Mapping[str, str]] | None,
          force: bool) -> tuple[list[Task], list[str]]:
    opts = options_key(options)
    done = set() if force else done_keys(root)
    tasks: list[Task] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for c in captures:
        with reaching(c.path):
            sha = file_sha256(c.path)
        key = capture_key(sha, opts)
        if key in done or key in seen:
            skipped.append(c.name)
            continue
        seen.add(key)
        src = place(c.path)
        tasks.append(Task(root=place(root).url, path=src.url,
                          capture=c.name, sha256=sha, key=key, options_key=opts,
                          size=int(src.fs.size(src.path)),
                          options=options, tags=tags_for(c, tags or {}, tags_csv or {})))
    return tasks, skipped


@contextlib.contextmanager
def _executor(jobs: int | None, dask: str | None) -> Iterator[tuple[cf.Executor | None, int]]:
    """The executor to run on and its number of workers (None: run in this process)."""
    if dask is not None:
        from distributed import Client

        try:
            # Any: distributed's methods are untyped
            client: Any = Client(dask, timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(str(exc)) from None
        with client:
            workers = sum(client.nthreads().values())
            executor = client.get_executor(pure=False)
            yield executor, workers
        return
    n = jobs or os.cpu_count() or 1
    if n == 1:
        yield None, 1
        return
    _preload()
    with cf.ProcessPoolExecutor(max_workers=n) as pool:
        yield pool, n


def _preload() -> None:
    """Import what every worker imports (pandas, pyarrow, the analysis' tables) before the
    pool forks, so that each process starts with them instead of spending its first second
    importing them again."""
    import pyarrow.parquet  # noqa: F401

    from ..analysis import tables  # noqa: F401


def run_batch(tasks: Sequence[Task], *, jobs: int | None = None, dask: str | None = None,
              on_done: Callable[[Outcome], None] | None = None) -> BatchResult:
    """Run ``tasks`` on ``jobs`` local processes (default: every core; 1: in this process) or
    on the Dask cluster at ``dask`` (``tcp://host:port``), calling ``on_done`` as each capture
    finishes (in completion order). A failed capture is an outcome, never an exception;
    a cluster that cannot be reached raises :class:`ClusterError`."""
    start = time.perf_counter()
    result = BatchResult()
    if tasks:
        where = place(tasks[0].root)
        where.fs.makedirs(where.path, exist_ok=True)
    with _executor(jobs, dask) as (executor, workers):
        result.workers = workers
        if executor is None:
            done: Iterator[Outcome] = (analyse_into(t) for t in tasks)
        else:
            futures = [executor.submit(analyse_into, t) for t in tasks]
            done = (f.result() for f in cf.as_completed(futures))
        for outcome in done:
            result.outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
    if tasks:
        remove_scratch(tasks[0].root)
    result.seconds = time.perf_counter() - start
    return result

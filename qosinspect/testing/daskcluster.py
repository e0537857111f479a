"""A real Dask distributed cluster on 127.0.0.1 for tests and benchmarks: ``dask scheduler``
and ``dask worker`` processes, as a user would start them, on free ports, stopped after.

Why the command-line programs rather than ``LocalCluster``: ``batch --dask`` is meant for a
cluster that is not the batch's own process tree, with workers that import qosinspect on their
own; starting them as separate programs is the closest to that.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .tools import free_port, stop_process, wait_port

__all__ = ["dask_cluster"]


def _dask_program() -> list[str]:
    """The ``dask`` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("dask")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dask")
    if found is None:
        raise FileNotFoundError("the dask command is missing: pip install 'dask[distributed]'")
    return [found]


@contextlib.contextmanager
def dask_cluster(workers: int = 2, *, timeout: float = 60.0) -> Iterator[str]:
    """Start a scheduler and ``workers`` single-threaded worker processes (no nanny, no
    dashboard) on 127.0.0.1; yield the scheduler's address once every worker has joined;
    stop them all (SIGTERM, then a kill) on the way out."""
    dask = _dask_program()
    procs: list[subprocess.Popen[Any]] = []
    scratch = tempfile.mkdtemp(prefix="qosinspect-dask-")
    try:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        scheduler = subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=scratch)
        procs.append(scheduler)
        wait_port(port, timeout, proc=scheduler)
        for i in range(workers):
            procs.append(subprocess.Popen(
                [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                 "--local-directory", scratch],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=scratch))
        from distributed import Client

        with Client(address, timeout=f"{timeout}s") as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(workers, timeout=timeout)
        yield address
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        shutil.rmtree(scratch, ignore_errors=True)

"""A real S3 endpoint on 127.0.0.1 for tests: moto's server program (``moto_server``), on a
free port, stopped after.

Why a server process rather than moto's in-process mocks: ``batch`` hands its work to other
processes (a local pool, Dask workers), which reach the store over HTTP through fsspec and
s3fs exactly as they would reach AWS or MinIO; only the endpoint differs (``AWS_ENDPOINT_URL``,
which botocore reads).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .tools import free_port, stop_process, wait_port

__all__ = ["S3_ENV", "s3_server"]

#: The environment a client of the test server needs besides ``AWS_ENDPOINT_URL``.
S3_ENV = {"AWS_ACCESS_KEY_ID": "qosinspect-test", "AWS_SECRET_ACCESS_KEY": "qosinspect-test",
          "AWS_DEFAULT_REGION": "us-east-1"}


def _program() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise FileNotFoundError("moto_server is missing: pip install 'moto[server]'")
    return found


@contextlib.contextmanager
def s3_server(timeout: float = 30.0) -> Iterator[str]:
    """Start ``moto_server`` on 127.0.0.1 and yield its endpoint URL; stop it on the way
    out (its buckets live in its memory and go with it)."""
    port = free_port()
    scratch = tempfile.mkdtemp(prefix="qosinspect-s3-")
    proc = subprocess.Popen([_program(), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=scratch)
    try:
        wait_port(port, timeout, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        shutil.rmtree(scratch, ignore_errors=True)

"""What the tests of live runs share: root for a loopback capture, runs of free ports, reading
``watch``'s JSON lines as they come."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qosinspect.testing.tools import IN_CI

__all__ = ["QOSINSPECT", "free_run", "read_until", "require_root"]

QOSINSPECT = str(Path(sys.executable).with_name("qosinspect"))


def require_root() -> None:
    """Skip unless root (a live capture on the loopback needs it); under CI=true, fail."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the live watch tests capture on the loopback: they need root")
        pytest.skip("a live capture needs root")


def free_run(n: int) -> int:
    """A port P with P .. P+n-1 all free a moment ago (the generator's front ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n >= 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def read_until(proc: subprocess.Popen[bytes], kind: str, timeout: float) -> list[bytes]:
    """Lines of ``proc``'s stdout up to the first JSON object of type ``kind``."""
    assert proc.stdout is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([proc.stdout], [], [], 0.2)[0]:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if json.loads(line).get("type") == kind:
            return lines
    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
    raise AssertionError(f"no {kind!r} line from {proc.args} within {timeout} s: {err}")

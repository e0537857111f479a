"""Helpers of the differential tests: the same work through the pure-Python path and the C
accelerator (qosinspect._speedups), with everything observable collected for comparison."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import pytest

from qosinspect import _accel
from qosinspect.capture import iter_events
from qosinspect.capture.lines import formatter
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.errors import CaptureError


def require_speedups() -> None:
    """Skip when the extension is not there (it is built wherever a C compiler is, CI too:
    there its absence fails the test unless QOSINSPECT_PURE asked for the pure path)."""
    if _accel.speedups is not None:
        return
    if os.environ.get("CI") == "true" and os.environ.get("QOSINSPECT_PURE", "") in ("", "0"):
        pytest.fail("qosinspect._speedups is not built (it needs gcc and the Python headers)")
    pytest.skip("qosinspect._speedups is not built or QOSINSPECT_PURE is set")


def both(make: Callable[[], Any]) -> tuple[Any, Any]:
    """``(pure, accelerated)``: ``make()`` called with the C path off, then on."""
    with _accel.pure():
        pure = make()
    return pure, make()


def outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    """What ``run()`` returned, or which error (type, message) it raised."""
    try:
        return "ok", run()
    except Exception as exc:
        return "error", (type(exc).__name__, str(exc))


def capture_events(data: bytes, accelerated: bool, **options: Any
                   ) -> tuple[list[Any], Any, tuple[str, str] | None]:
    """Every event of an in-memory capture, the summary, and the CaptureError (if any)."""
    def make() -> Any:
        return iter_events(CaptureFile.from_bytes(data), **options)

    if accelerated:
        stream = make()
    else:
        with _accel.pure():
            stream = make()
    events: list[Any] = []
    error = None
    try:
        for ev in stream:
            events.append(ev)
    except CaptureError as exc:
        error = (type(exc).__name__, str(exc))
    return events, stream.summary, error


def capture_lines(data: bytes, fmt: str, accelerated: bool, **options: Any
                  ) -> tuple[str, tuple[str, str] | None]:
    """The output of ``qosinspect decode --format FMT`` for an in-memory capture."""
    def make() -> Any:
        return (iter_events(CaptureFile.from_bytes(data), keep_tcp_stats=False, **options),
                formatter(fmt))

    if accelerated:
        stream, fmt_line = make()
    else:
        with _accel.pure():
            stream, fmt_line = make()
    out = io.StringIO()
    error = None
    try:
        fmt_line.write_all(stream, out.write)
    except CaptureError as exc:
        error = (type(exc).__name__, str(exc))
    return out.getvalue(), error

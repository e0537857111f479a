"""Helpers for the capture tests: run the pipeline on bytes and fold its records per stream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.pipeline import CapturePipeline
from qosinspect.capture.records import (
    CaptureRecord,
    FirstFrame,
    Flagged,
    Gap,
    Retransmitted,
    StreamData,
)

CONNECT = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"  # MQTT 3.1.1 CONNECT, id "abcd"
CONNACK = b"\x20\x02\x00\x00"


def run_bytes(data: bytes, **options: Any) -> list[CaptureRecord]:
    """All records of an in-memory capture but the FirstFrame (tests/capture/test_clock.py) and
    the TCP analysis' flags (tests/capture/test_tcp_analysis.py)."""
    return [r for r in CapturePipeline(CaptureFile.from_bytes(data), **options)
            if type(r) is not FirstFrame and type(r) is not Flagged]


def streams(records: Iterable[CaptureRecord]) -> dict[tuple[int, str], list[bytes | int]]:
    """Per (conn_id, direction): delivered bytes merged, gaps as ints (missing byte counts)."""
    out: dict[tuple[int, str], list[bytes | int]] = {}
    for r in records:
        if type(r) is StreamData:
            items = out.setdefault((r.flow.conn_id, r.direction.value), [])
            if items and isinstance(items[-1], bytes):
                items[-1] += r.data
            else:
                items.append(r.data)
        elif type(r) is Gap:
            items = out.setdefault((r.flow.conn_id, r.direction.value), [])
            if items and isinstance(items[-1], int):
                items[-1] += r.missing_bytes
            else:
                items.append(r.missing_bytes)
    return out


def retransmissions(records: Iterable[CaptureRecord]) -> list[Retransmitted]:
    return [r for r in records if type(r) is Retransmitted]


def expected_with_holes(data: bytes, holes: list[tuple[int, int]]) -> list[bytes | int]:
    """``data`` with the ``[start, end)`` ranges cut out as gap markers (merged)."""
    out: list[bytes | int] = []
    pos = 0
    for a, b in sorted(holes):
        if a > pos:
            out.append(data[pos:a])
        if out and isinstance(out[-1], int) and a <= pos:
            out[-1] += b - max(a, pos)
        elif b > max(a, pos):
            out.append(b - max(a, pos))
        pos = max(pos, b)
    if pos < len(data):
        out.append(data[pos:])
    return out

"""``watch`` on every real capture the project has: its final report is ``report``'s.

The shipped captures (captures/captures.json), the field captures and the community ones
(../shared, mid-stream, port 1337) are read through the stream reader and the live core as
``watch -`` reads a pipe (snapshots and events on the way), and the final JSON report must be
``report --format json`` of the same file, field for field: one analysis core, whatever the
source. (TLS captures are left to ``report``: watch reads no key log.)
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.live.app import run_watch
from qosinspect.live.core import report_options
from qosinspect.live.sources import StreamSource
from qosinspect.testing.tools import PROJECT_ROOT, community_captures

_SHIPPED = json.loads((PROJECT_ROOT / "captures" / "captures.json").read_text())
_FIELD = PROJECT_ROOT / "captures" / "field"
RUNS: list[tuple[Path, tuple[int, ...]]] = [
    *((PROJECT_ROOT / "captures" / e["file"], tuple(e["ports"])) for e in _SHIPPED
      if "tls" not in e["file"]),
    (_FIELD / "paho-midstream-17501.pcap", (17501,)),
    (_FIELD / "tcp-loss-client-side.pcap", (1883,)),
    (_FIELD / "tcp-loss-broker-side.pcap", (1883,)),
]


def _watched(path: Path, ports: tuple[int, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = io.StringIO()
    analysis = run_watch(StreamSource(str(path), ports=ports), out, interval_s=0.5,
                         stall_ms=1000)
    return analysis.report(), [json.loads(line) for line in out.getvalue().splitlines()]


def _reported(path: Path, ports: tuple[int, ...]) -> dict[str, Any]:
    report: dict[str, Any] = analyze_capture(path, ports=ports,
                                             options=report_options()).report()
    return report


def _check(path: Path, ports: tuple[int, ...]) -> None:
    mine, lines = _watched(path, ports)
    want = _reported(path, ports)
    del mine["capture"]["source"], want["capture"]["source"]
    assert mine == want, path.name
    snapshots = [x for x in lines if x["type"] == "snapshot"]
    assert snapshots, path.name
    # the last snapshot counts what the report counts
    for row, snap in zip(want["per_qos"], snapshots[-1]["per_qos"], strict=True):
        assert (snap["messages"], snap["completed"], snap["retransmissions"]) == \
            (row["publishes"], row["completed"], row["retransmissions"]), path.name
    assert sum(x["type"] == "reconnection" for x in lines) == want["reconnects"], path.name


@pytest.mark.parametrize("path,ports", RUNS, ids=[p.name for p, _ in RUNS])
def test_watch_report_is_reports(path: Path, ports: tuple[int, ...]) -> None:
    _check(path, ports)


def test_watch_report_is_reports_on_community_captures() -> None:
    runs = community_captures()
    assert runs
    for path, ports in runs:
        _check(path, ports)

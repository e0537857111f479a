"""Issue 14, "one huge capture in bounded memory": ``qosinspect report`` on a capture and on the
same capture five times over (each copy after the previous one, shifted in time) peaks at the
same RSS, within a few MB: finished exchanges are folded, not kept (qosinspect.analysis.aggregate).

Before the folding every finished exchange stayed as a 78-byte row: five copies of 140,000
exchanges peaked 73 MB above one copy (68 -> 141 MB); folded, 2 MB. Not timed: only peak RSS is
compared (each ``report`` a process of its own, measured by ``wait4``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qosinspect.testing.stresscaps import qos1_flows_and_copies

QOSINSPECT = str(Path(sys.executable).parent / "qosinspect")
EXCHANGES = 140_000          # more than the joinable window (131,072): the ring wraps at 1x
BOUND_MB = 8.0


def _report(path: Path) -> tuple[dict[str, object], float]:
    """``qosinspect report --format json`` on ``path``: the report, and the peak RSS (MB)."""
    out, err = path.with_suffix(".json"), path.with_suffix(".err")
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([QOSINSPECT, "report", "--format", "json", "--port", "1883",
                                 str(path)], stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text()
    return json.loads(out.read_text()), usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return qos1_flows_and_copies(tmp_path_factory.mktemp("bounded"), EXCHANGES)


def test_report_peak_rss_does_not_grow_with_the_capture(captures: tuple[Path, Path]) -> None:
    one, five = captures
    r1, rss1 = _report(one)
    r5, rss5 = _report(five)
    q1, q5 = r1["per_qos"][1], r5["per_qos"][1]      # type: ignore[index]
    assert q1["publishes"] == q1["completed"] == EXCHANGES       # type: ignore[index]
    assert q5["publishes"] == q5["completed"] == 5 * EXCHANGES   # type: ignore[index]
    assert r5["reconnects"] == 4                    # each copy resumes the session
    assert r5["percentiles"]["sketched"]            # type: ignore[index]
    assert rss5 - rss1 <= BOUND_MB, f"peak RSS {rss1:.1f} MB at 1x, {rss5:.1f} MB at 5x"

"""Issue 14, "one huge capture in bounded memory", for ``batch``: a batch worker on a capture and
on the same capture five times over (each copy after the previous one, shifted in time) peaks at
the same RSS within a few MB, because the large tables leave the analysis as they become final
and are written a block at a time (:mod:`qosinspect.analysis.spool`).

Before (every row kept, each table built whole in memory): 140,000 QoS 1 exchanges peaked at
337 MB, five times as many at 895 MB. Not timed: only peak RSS is compared (each ``batch`` a
process of its own, ``--jobs 1`` so that the analysis runs in it, measured by ``wait4``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from qosinspect.testing.stresscaps import qos1_flows_and_copies

QOSINSPECT = str(Path(sys.executable).parent / "qosinspect")
EXCHANGES = 140_000          # more than the joinable window (131,072): the ring wraps at 1x
BOUND_MB = 15.0


def _batch(capture: Path, root: Path) -> tuple[int, float]:
    """``qosinspect batch CAPTURE -o ROOT --jobs 1``: the exchanges written, peak RSS (MB)."""
    err = root.with_suffix(".err")
    with err.open("wb") as e:
        proc = subprocess.Popen([QOSINSPECT, "batch", str(capture), "-o", str(root), "--jobs",
                                 "1"], stdout=subprocess.DEVNULL, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text()
    rows = sum(pq.ParquetFile(f).metadata.num_rows
               for f in (root / "exchanges").rglob("*.parquet"))
    return rows, usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return qos1_flows_and_copies(tmp_path_factory.mktemp("bounded-batch"), EXCHANGES)


def test_batch_worker_peak_rss_does_not_grow_with_the_capture(
        captures: tuple[Path, Path], tmp_path: Path) -> None:
    one, five = captures
    n1, rss1 = _batch(one, tmp_path / "one")
    n5, rss5 = _batch(five, tmp_path / "five")
    assert (n1, n5) == (EXCHANGES, 5 * EXCHANGES)
    assert rss5 - rss1 <= BOUND_MB, f"peak RSS {rss1:.1f} MB at 1x, {rss5:.1f} MB at 5x"

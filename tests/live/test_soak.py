"""Soak: ``watch`` on the loopback through 20 minutes of the seed scenario (ten topics at 10 Hz at
each of QoS 0, 1 and 2, to a persistent subscriber and a steady one) with a fault every minute
(cuts with a reset or a FIN, stalled acknowledgements, dropped PUBACKs, in turn): its RSS,
sampled every 10 s, stays flat after the warm-up.

What it shows is the bounded state of the live analysis: a run of days must not grow with the
traffic it has seen, only with what is open. The bound: after the warm-up, the RSS never exceeds
the RSS at the warm-up's end by more than :data:`GROWTH_LIMIT_MB`.

The warm-up is computed, not guessed: it is when the last bounded structure that grows with the
traffic has filled at this run's rate (read from the final report after the run, as finished
QoS 1/2 exchanges per second). The one that takes longest is the joinable window of finished
exchanges: it holds 131,072 rows (82 B each, 10.7 MB) at most and, with the bound in time
(:data:`~qosinspect.analysis.options.JOINABLE_NS`, 300 s), only those of the last 300 s of packet
time, plus at most two blocks of :data:`~qosinspect.analysis.exchanges.FOLD_BLOCK` being filled
(a block leaves when its newest exchange is 300 s old), so it is full at
``min(300 s, 131,072 / rate) + 2 * FOLD_BLOCK / rate`` and then only reuses its memory. The
rest fills sooner: the ring of per-second sketches (10 s), deliveries waiting for their copies
(60 s), the per-session index of finished ids (its 4096-key dict turns into one array within
300 s at these rates). One bounded structure may still fill after the warm-up, the report's
exact latency series (65,536 values of 8 B per QoS and step before it turns into a sketch):
what is left of it at the warm-up is computed too and must fit in the bound with room to spare
(``series_left_mb`` in the figures), so the bound holds the allocator's noise, not a structure
still filling.

The exact latency series are kept per broker, and the soak's four front ports are four brokers,
so they fill at the rate of one broker's exchanges: 99 or 198 per second here, full after 332 to
664 s, longer than the window. A first run (2026-12-07, 20 minutes, 597 finished exchanges/s)
judged from a warm-up that counted only the window (337 s) grew 9.6 MB after it (70.5 to 80.1
MB: the series still filling) and failed; its samples judged from the warm-up computed here
(674 s: 76.9 MB) grow 3.2 MB (to 80.1 MB), within the bound.

Minutes long, so behind the ``soak`` marker, which ``make test`` (and a plain ``pytest``) leave
out: ``.venv/bin/pytest -m soak -s tests/live/test_soak.py``. ``QOSINSPECT_SOAK_MINUTES``
shortens it (3 checks the harness and skips the judgement: the warm-up alone is longer; it
takes :data:`MIN_SAMPLES_AFTER` samples after the warm-up, so at least about 11 minutes).
It prints the samples (with ``-s``) and the figures the report quotes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from qosinspect.analysis.aggregate import DEFAULT_EXACT_UP_TO
from qosinspect.analysis.exchanges import FOLD_BLOCK
from qosinspect.analysis.options import JOINABLE_NS, AnalysisOptions
from qosinspect.testing.tools import require_tool, stop_process

from ._runs import QOSINSPECT, free_run, read_until, require_root

MINUTES = float(os.environ.get("QOSINSPECT_SOAK_MINUTES", "20"))
SAMPLE_S = 10.0
#: RSS growth allowed after the warm-up, in MB.
GROWTH_LIMIT_MB = 8.0
#: Samples after the warm-up the growth is judged on (a shorter run only checks the harness).
MIN_SAMPLES_AFTER = 30


def warmup_s(report: dict[str, Any], judged_s: float) -> float:
    """When the bounded structures are full at the run's rates (see the module docstring),
    plus one sample: the joinable window (the first of its bounds reached, in time or in
    count, plus two blocks) and every exact latency series that fills before the last
    ``judged_s`` seconds of the run (the others are :func:`series_left_mb`)."""
    rate = max(finished_per_s(report), 1e-9)
    full = min(JOINABLE_NS / 1e9, AnalysisOptions().max_joinable_finished / rate)
    full += 2 * FOLD_BLOCK / rate
    last = report["capture"]["duration_s"] - judged_s
    fills = [DEFAULT_EXACT_UP_TO / r for _, r in series_rates(report)]
    return max([full, *(t for t in fills if t <= last)]) + SAMPLE_S


def finished_per_s(report: dict[str, Any]) -> float:
    """QoS 1/2 exchanges finished per second over the run."""
    seconds = max(float(report["capture"]["duration_s"]), 1e-9)
    return float(sum(r["publishes"] for r in report["per_qos"] if r["qos"])) / seconds


def series_rates(report: dict[str, Any]) -> list[tuple[int, float]]:
    """The exact latency series by how many there are of one rate: per broker (series are kept
    per broker: the soak's four front ports are four) and QoS, the total and each step take a
    value per completed exchange (QoS 1: 2 series, QoS 2: 4)."""
    seconds = max(float(report["capture"]["duration_s"]), 1e-9)
    return [(2 if row["qos"] == 1 else 4, row["completed"] / seconds)
            for broker in report["brokers"] for row in broker["per_qos"]
            if row["qos"] and row["completed"]]


def series_left_mb(report: dict[str, Any], at_s: float) -> float:
    """What the exact latency series can still take after ``at_s`` (MB, 8 B a value)."""
    return sum(n * max(0.0, DEFAULT_EXACT_UP_TO - rate * at_s) * 8
               for n, rate in series_rates(report)) / 2**20


_SEED = "\n".join(f"""
[[publishers]]
name = "pub-q{q}"
keep_alive = 30
[[publishers.topics]]
topic = "seed/qos{q}/sensor{{i}}"
count = 10
qos = {q}
rate = 10.0
payload_size = 64
""" for q in (0, 1, 2))
_FAULTS = (
    'kind = "cut"\nclient = "sub-persistent"\nhow = "rst"\ndown_for = 2.0',
    'kind = "hold_acks"\nclient = "sub-persistent"\nduration = 1.0\ndirection = "c2b"',
    'kind = "drop"\nclient = "sub-persistent"\npacket_type = "PUBACK"\ndirection = "c2b"\n'
    'every = 3\ncount = 3',
    'kind = "cut"\nclient = "pub-q1"\nhow = "fin"\ndown_for = 1.0',
)


def soak_scenario(minutes: float) -> str:
    """The seed scenario for ``minutes``, a fault each minute (from 30 s on), in turn."""
    faults = "".join(f"\n[[faults]]\nat = {30 + 60 * m}.0\n{_FAULTS[m % len(_FAULTS)]}\n"
                     for m in range(int(minutes)))
    return f"""name = "soak"
description = "seed traffic with a fault every minute"
duration = {minutes * 60}
{_SEED}
[[subscribers]]
name = "sub-persistent"
filters = ["seed/#"]
qos = 2
clean_start = false
session_expiry = 3600
keep_alive = 30

[[subscribers]]
name = "sub-steady"
filters = ["seed/#"]
qos = 2
keep_alive = 30
{faults}"""


class Lines:
    """watch's JSON lines, counted by type as they come (a thread reads them)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_snapshot: dict[str, Any] | None = None

    def read(self, out: IO[bytes]) -> None:
        for line in out:
            item = json.loads(line)
            kind = item.get("type", "?")
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "snapshot":
                self.last_snapshot = item


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


@pytest.mark.soak
@pytest.mark.timeout(int(MINUTES * 60 + 600))
def test_watch_rss_stays_flat(tmp_path: Path) -> None:
    require_root()
    require_tool("dumpcap")
    front = free_run(4)
    scenario = tmp_path / "soak.toml"
    scenario.write_text(soak_scenario(MINUTES))
    truth_path = tmp_path / "truth.json"
    ports = [f"-p{p}" for p in range(front, front + 4)]
    watch = subprocess.Popen(
        [QOSINSPECT, "watch", "-i", "lo", "--tool", "dumpcap", *ports, "--format", "jsonl",
         "--report-format", "json", "--report", str(tmp_path / "final.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gen = None
    samples: list[tuple[float, float]] = []
    lines = Lines()
    try:
        read_until(watch, "start", 30)
        assert watch.stdout is not None
        reader = threading.Thread(target=lines.read, args=(watch.stdout,), daemon=True)
        reader.start()
        gen = subprocess.Popen(
            [QOSINSPECT, "generate", str(scenario), "--port", str(front), "--truth",
             str(truth_path), "--seed", "7", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while gen.poll() is None:
            time.sleep(max(0.0, t0 + SAMPLE_S * (len(samples) + 1) - time.monotonic()))
            rss = rss_mb(watch.pid)
            assert rss is not None and watch.poll() is None, "watch ended during the run"
            samples.append((time.monotonic() - t0, rss))
        _, gen_err = gen.communicate(timeout=60)
        assert gen.returncode == 0, gen_err.decode()
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=120)
        reader.join(30)
        assert watch.returncode == 0, err.decode()
    finally:
        for p in (gen, watch):
            if p is not None:
                stop_process(p)
    truth = json.loads(truth_path.read_text())
    assert set(truth["run"]["front_ports"]) <= set(range(front, front + 4))
    report = json.loads((tmp_path / "final.json").read_text())
    warmup = warmup_s(report, MIN_SAMPLES_AFTER * SAMPLE_S)
    after = [rss for t, rss in samples if t >= warmup]
    at_warmup = after[0] if after else None
    figures = {"minutes": MINUTES, "samples": len(samples), "warmup_s": round(warmup, 1),
               "finished_per_s": round(finished_per_s(report), 1),
               "series_left_mb": round(series_left_mb(report, warmup), 2),
               "rss_mb_first": samples[0][1], "rss_mb_at_warmup": at_warmup,
               "rss_mb_end": samples[-1][1], "rss_mb_max": max(rss for _, rss in samples),
               "growth_after_warmup_mb": round(max(after) - after[0], 1) if after else None,
               "lines": lines.counts, "samples_mb": [round(r, 1) for _, r in samples]}
    print("soak:", json.dumps(figures))
    # the run did what it says: snapshots every second, the cuts seen as reconnections
    assert lines.counts.get("snapshot", 0) >= MINUTES * 50
    cuts = sum(1 for m in range(int(MINUTES)) if m % len(_FAULTS) in (0, 3))
    assert lines.counts.get("reconnection", 0) >= cuts
    assert report["reconnects"] >= cuts
    if len(after) < MIN_SAMPLES_AFTER:
        pytest.skip(f"{MINUTES} minutes: the harness ran, but {len(after)} samples after the "
                    f"warm-up ({warmup:.0f} s) are too few to judge growth: {figures}")
    assert series_left_mb(report, warmup) <= GROWTH_LIMIT_MB / 2, figures
    assert at_warmup is not None and max(after) - at_warmup <= GROWTH_LIMIT_MB, figures

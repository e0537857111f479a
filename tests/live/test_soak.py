"""Soak: ``watch`` on the loopback through 20 minutes of the seed scenario (ten topics at 10 Hz at
each of QoS 0, 1 and 2, to a persistent subscriber and a steady one) with a fault every minute
(cuts with a reset or a FIN, stalled acknowledgements, dropped PUBACKs, in turn): its RSS,
sampled every 10 s, stays flat after the warm-up.

What it shows is the bounded state of the live analysis: a run of days must not grow with the
traffic it has seen, only with what is open. The bound: the RSS after the warm-up never exceeds
the RSS at its end by more than :data:`GROWTH_LIMIT_MB`.

Minutes long, so behind the ``soak`` marker, which ``make test`` (and a plain ``pytest``) leave
out: ``.venv/bin/pytest -m soak -s tests/live/test_soak.py``. ``QOSINSPECT_SOAK_MINUTES``
shortens it (3 is enough to check the harness). It prints the samples (with ``-s``) and the
figures the report quotes.
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

from qosinspect.testing.tools import require_tool, stop_process

from ._runs import QOSINSPECT, free_run, read_until, require_root

MINUTES = float(os.environ.get("QOSINSPECT_SOAK_MINUTES", "20"))
SAMPLE_S = 10.0
#: The warm-up: the first quarter of the run, at most three minutes.
WARMUP_S = min(180.0, MINUTES * 15)
#: RSS growth allowed after the warm-up, in MB.
GROWTH_LIMIT_MB = 8.0

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
    after = [rss for t, rss in samples if t >= WARMUP_S]
    at_warmup = after[0]
    figures = {"minutes": MINUTES, "samples": len(samples), "warmup_s": WARMUP_S,
               "rss_mb_first": samples[0][1], "rss_mb_at_warmup": at_warmup,
               "rss_mb_end": after[-1], "rss_mb_max": max(rss for _, rss in samples),
               "growth_after_warmup_mb": round(max(after) - at_warmup, 1),
               "lines": lines.counts, "samples_mb": [round(r, 1) for _, r in samples]}
    print("soak:", json.dumps(figures))
    # the run did what it says: snapshots every second, the cuts seen as reconnections
    assert lines.counts.get("snapshot", 0) >= MINUTES * 50
    cuts = sum(1 for m in range(int(MINUTES)) if m % len(_FAULTS) in (0, 3))
    assert lines.counts.get("reconnection", 0) >= cuts
    report = json.loads((tmp_path / "final.json").read_text())
    assert report["reconnects"] >= cuts
    assert max(after) - at_warmup <= GROWTH_LIMIT_MB, figures

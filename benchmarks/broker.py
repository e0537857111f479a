"""Broker benchmark: our broker against mosquitto, same load generator, same run.

The load generator is ``../shared/bench/mqtt_load.py`` (asyncio, raw sockets; publishers in one
process, subscribers in another). Each scenario runs against ``qosinspect broker`` (the CLI, so
what a user starts: uvloop when installed) and against mosquitto (Debian package, default
settings) started on free 127.0.0.1 ports, one after the other:

- 1 publisher -> 1 subscriber at QoS 0, 1 and 2, 64-byte payloads, maximum speed;
- fan-in: 10 publishers -> 1 subscriber at QoS 1 and 2, maximum speed (messages lost counted:
  mosquitto's default queue limit drops, ours pauses publishers instead);
- the seed scenario: 10 publishers on 10 topics at 10 Hz each, QoS 1, latency p50/p99;
- slow subscriber (issue 12): 1 publisher at 500 msg/s QoS 1, 10 subscribers that keep up and
  1 that never reads, 30 s (``benchmarks/_slow_subscriber.py``): the 10 must get every
  message with no stall above 100 ms; the JSON says what happened to the slow one;
- retained (issue 12): 100,000 retained messages, then a ``#`` subscriber gets them all while
  another client pings every 10 ms (``benchmarks/_retained.py``): memory, and how long the
  other client waited at most.

Reported: delivered msgs/s (at the subscriber), lost and duplicated messages, end-to-end latency,
the brokers' CPU use, and the ratio ours/mosquitto. Timing figures depend on the machine (a
shared 2-core box here): compare the ratios from one run.

    python benchmarks/broker.py                 # about 2 minutes
    python benchmarks/broker.py --duration 10   # longer runs
    python benchmarks/broker.py --json          # one JSON object
    python benchmarks/broker.py --scenario slow_subscriber --json   # that one alone
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qosinspect.testing.tools import free_port, stop_process, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _retained import run_retained
from _slow_subscriber import run_slow_subscriber

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / "shared" / "bench" / "mqtt_load.py"


@contextlib.contextmanager
def ours(tree: Path | None = None) -> Iterator[tuple[int, int]]:
    """``qosinspect broker`` on a free port: (port, pid). ``tree``: run the package found in that
    source tree instead of the installed one (``broker_ab.py`` compares two revisions so)."""
    exe = Path(sys.executable).parent / "qosinspect"
    env = None
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([str(exe), "broker", "--port", "0", "--allow-anonymous"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "ready" not in line:
            raise SystemExit(f"qosinspect broker did not start: {line}{proc.stderr.read()}")
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        yield port, proc.pid
    finally:
        stop_process(proc, timeout=15)


@contextlib.contextmanager
def mosquitto(tmp: Path) -> Iterator[tuple[int, int]]:
    """mosquitto with its default limits on a free port: (port, pid)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise SystemExit("mosquitto is not installed (scripts/ensure-system-deps.sh)")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\n"
                    "allow_anonymous true\n", encoding="ascii")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        try:
            wait_port(port, 15, proc=proc)
        except (TimeoutError, RuntimeError) as exc:
            raise SystemExit(f"mosquitto did not start: {exc}") from None
        yield port, proc.pid
    finally:
        stop_process(proc, timeout=15)


def load(port: int, pid: int, tmp: Path, *, qos: int, pubs: int = 1, topics: int = 0,
         rate: float = 0, duration: float, uvloop: bool) -> dict[str, Any]:
    """One mqtt_load.py run; its JSON record."""
    out = tmp / f"run-{time.monotonic_ns()}.json"
    cmd = [sys.executable, str(GENERATOR), "--port", str(port), "--qos", str(qos),
           "--pubs", str(pubs), "--size", "64", "--rate", str(rate), "--duration",
           str(duration), "--broker-pid", str(pid), "--json", str(out)]
    if topics:
        cmd += ["--topics", str(topics)]
    if uvloop:
        cmd.append("--uvloop")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 240,
                          check=False)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"load generator failed: {done.stdout}{done.stderr}")
    record: dict[str, Any] = json.loads(out.read_text().splitlines()[-1])
    return record


SCENARIOS: list[tuple[str, dict[str, Any]]] = [
    ("1to1_qos0", {"qos": 0}),
    ("1to1_qos1", {"qos": 1}),
    ("1to1_qos2", {"qos": 2}),
    ("fanin10_qos1", {"qos": 1, "pubs": 10}),
    ("fanin10_qos2", {"qos": 2, "pubs": 10}),
    ("seed_10x10hz_qos1", {"qos": 1, "pubs": 10, "topics": 10, "rate": 10}),
]


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    lat = rec["latency_ms"]
    return {"msgs_per_s": round(rec["delivered_rate"]), "published": rec["published"],
            "delivered": rec["delivered"], "lost": rec["lost"],
            "duplicates": rec["duplicates"], "latency_p50_ms": lat["p50"],
            "latency_p99_ms": lat["p99"], "broker_cpu_pct": rec["broker_cpu_pct"]}


def _all_or_none(checks: Iterator[bool]) -> bool | None:
    """True or False over the scenarios that ran; None when none of them did."""
    values = list(checks)
    return all(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--seed-duration", type=float, default=10.0,
                    help="seconds of the 10 Hz seed scenario (default 10)")
    ap.add_argument("--no-uvloop", action="store_true",
                    help="run the load generator on the default asyncio loop")
    ap.add_argument("--only", "--scenario", dest="only",
                    help="comma-separated scenario names (" + ", ".join(
                        [n for n, _ in SCENARIOS] + ["slow_subscriber", "retained"]) + ")")
    ap.add_argument("--slow-duration", type=float, default=30.0,
                    help="seconds of the slow-subscriber scenario (default 30)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    if not GENERATOR.exists():
        raise SystemExit(f"the load generator {GENERATOR} is missing (../shared/bench)")
    uvloop = not a.no_uvloop
    if uvloop:
        try:
            import uvloop as _uv  # noqa: F401
        except ImportError:
            uvloop = False
    wanted = set(a.only.split(",")) if a.only else None
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for name, kw in SCENARIOS:
            if wanted is not None and name not in wanted:
                continue
            duration = a.seed_duration if name.startswith("seed") else a.duration
            row: dict[str, Any] = {}
            for broker, start in (("qosinspect", ours), ("mosquitto", lambda: mosquitto(tmp))):
                with start() as (port, pid):
                    row[broker] = summary(load(port, pid, tmp, duration=duration,
                                               uvloop=uvloop, **kw))
                if not a.json:
                    r = row[broker]
                    print(f"{name:20s} {broker:11s} {r['msgs_per_s']:8d} msg/s  lost "
                          f"{r['lost']:7d}  dup {r['duplicates']:4d}  p50 "
                          f"{r['latency_p50_ms']:8.3f} ms  p99 {r['latency_p99_ms']:8.3f} ms  "
                          f"cpu {r['broker_cpu_pct'] or 0:4.0f}%", flush=True)
            mine, theirs = row["qosinspect"], row["mosquitto"]
            row["ratio_msgs_per_s"] = round(mine["msgs_per_s"] / theirs["msgs_per_s"], 3) \
                if theirs["msgs_per_s"] else None
            row["ratio_p99"] = round(mine["latency_p99_ms"] / theirs["latency_p99_ms"], 3) \
                if theirs["latency_p99_ms"] else None
            results[name] = row
        if wanted is None or "slow_subscriber" in wanted:
            results["slow_subscriber"] = slow_row = {}
            for broker, start in (("qosinspect", ours), ("mosquitto", lambda: mosquitto(tmp))):
                with start() as (port, _pid):
                    slow_row[broker] = run_slow_subscriber(port, duration=a.slow_duration)
                if not a.json:
                    r = slow_row[broker]
                    print(f"{'slow_subscriber':20s} {broker:11s} keepers all "
                          f"{r['keepers_received_all']}  max gap {r['keepers_max_gap_ms']} ms  "
                          f"p99 {r['keepers_latency_p99_ms']} ms  slow: {r['slow']}",
                          flush=True)
        if wanted is None or "retained" in wanted:
            results["retained"] = ret_row = {}
            for broker, start in (("qosinspect", ours), ("mosquitto", lambda: mosquitto(tmp))):
                with start() as (port, pid):
                    ret_row[broker] = run_retained(port, pid)
                if not a.json:
                    print(f"{'retained':20s} {broker:11s} {ret_row[broker]}", flush=True)
    report = {
        "generator": str(GENERATOR), "duration_s": a.duration, "uvloop": uvloop,
        "cpus": os.cpu_count(), "scenarios": results,
        "targets": {
            "half_of_mosquitto_at_every_qos": _all_or_none(
                results[n]["ratio_msgs_per_s"] is not None and results[n]["ratio_msgs_per_s"] >= 0.5
                for n in ("1to1_qos0", "1to1_qos1", "1to1_qos2") if n in results),
            "seed_p99_under_1ms": results["seed_10x10hz_qos1"]["qosinspect"]["latency_p99_ms"] < 1
            if "seed_10x10hz_qos1" in results else None,
            "slow_subscriber_stalls_nobody_over_100ms": (
                results["slow_subscriber"]["qosinspect"]["keepers_received_all"] and
                results["slow_subscriber"]["qosinspect"]["keepers_max_gap_ms"] <= 100)
            if "slow_subscriber" in results else None,
            "no_qos12_loss_in_fan_in": _all_or_none(
                results[n]["qosinspect"]["lost"] == 0
                for n in ("fanin10_qos1", "fanin10_qos2") if n in results),
        },
    }
    if a.json:
        print(json.dumps(report))
        return
    print()
    for name, row in results.items():
        if name in ("slow_subscriber", "retained"):
            continue
        print(f"{name:20s} ours/mosquitto msgs/s x{row['ratio_msgs_per_s']}  "
              f"p99 x{row['ratio_p99']}")
    for target, ok in report["targets"].items():
        print(f"target {target}: {'met' if ok else 'NOT met' if ok is False else 'not run'}")


if __name__ == "__main__":
    main()

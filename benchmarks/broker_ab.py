"""Broker A/B: two source trees of qosinspect (say, before and after a change) under the same
load, interleaved (old, new, mosquitto; old, new, mosquitto; ...), so that a change of load on a
shared machine hits both alike. Same load generator and scenarios as ``broker.py``.

Why interleaved: on a shared machine the absolute msg/s moves by 20 % from one minute to the
next; two runs of one tree and then two of the other measure the machine, not the change.
mosquitto runs in every round too, so each tree also gets its ratio to a fixed peer. Besides
msg/s, each run gives the broker's CPU time per delivered message (from ``/proc``, read before and
after the load), which other engineers' load moves much less than the msg/s.

    git worktree add --detach ../wt-old ff505b6        # the tree to compare with
    python benchmarks/broker_ab.py --old ../wt-old      # this tree is "new"; 1->1 QoS 0, 1, 2
    python benchmarks/broker_ab.py --old ../wt-old --rounds 3 --only 1to1_qos1 --json

Each tree runs from its sources (``PYTHONPATH``); the C accelerator must be built in both
(``implementation`` in the JSON says which ran), or the comparison is not fair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broker import GENERATOR, ROOT, SCENARIOS, load, mosquitto, ours, summary

DEFAULT = "1to1_qos0,1to1_qos1,1to1_qos2"


def implementation(tree: Path) -> str:
    """Which byte-level implementation ``tree`` runs: "c" (accelerator built) or "python"."""
    done = subprocess.run([sys.executable, "-P", "-c",
                           "import qosinspect, qosinspect._accel as a; "
                           "print(qosinspect.__file__); print(a.implementation())"],
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                          text=True, timeout=60, check=False)
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2:
        raise SystemExit(f"cannot import qosinspect from {tree}: {done.stderr}")
    if not Path(lines[0]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"PYTHONPATH={tree} imported {lines[0]}")
    return lines[1]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="source tree of the old code")
    ap.add_argument("--new", type=Path, default=ROOT, help="source tree of the new code "
                    "(default: this one)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per scenario (default 2)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--only", default=DEFAULT, help=f"comma-separated scenarios ({DEFAULT})")
    ap.add_argument("--no-mosquitto", action="store_true", help="the two trees only")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    if not GENERATOR.exists():
        raise SystemExit(f"the load generator {GENERATOR} is missing (../shared/bench)")
    known = dict(SCENARIOS)
    wanted = a.only.split(",")
    for name in wanted:
        if name not in known:
            raise SystemExit(f"unknown scenario {name!r} (one of {', '.join(known)})")
    trees = {"old": a.old, "new": a.new}
    impl = {label: implementation(tree) for label, tree in trees.items()}
    try:
        import uvloop  # noqa: F401
        have_uvloop = True
    except ImportError:
        have_uvloop = False
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for name in wanted:
            kw = known[name]
            runs: dict[str, list[int]] = {"old": [], "new": [], "mosquitto": []}
            cpu_us: dict[str, list[float]] = {k: [] for k in runs}
            lost: dict[str, int] = {k: 0 for k in runs}
            for _ in range(a.rounds):
                order: list[str] = ["old", "new"] + ([] if a.no_mosquitto else ["mosquitto"])
                for label in order:
                    start = (lambda: mosquitto(tmp)) if label == "mosquitto" else \
                        (lambda t=trees[label]: ours(t))
                    with start() as (port, pid):
                        cpu0 = cpu_s(pid)
                        rec = summary(load(port, pid, tmp, duration=a.duration,
                                           uvloop=have_uvloop, **kw))
                        cpu1 = cpu_s(pid)
                    runs[label].append(rec["msgs_per_s"])
                    per_msg = (cpu1 - cpu0) * 1e6 / rec["delivered"] if rec["delivered"] else 0
                    cpu_us[label].append(round(per_msg, 2))
                    lost[label] += rec["lost"]
                    if not a.json:
                        print(f"{name:12s} {label:9s} {rec['msgs_per_s']:8d} msg/s  "
                              f"{per_msg:6.2f} us CPU/msg  lost {rec['lost']}", flush=True)
            row: dict[str, Any] = {"runs": runs, "cpu_us_per_msg": cpu_us, "lost": lost}
            mean = {k: statistics.fmean(v) for k, v in runs.items() if v}
            row["mean"] = {k: round(v) for k, v in mean.items()}
            row["new_over_old"] = round(mean["new"] / mean["old"], 3) if mean["old"] else None
            # per round, so that a load change between rounds cancels out
            row["new_over_old_per_round"] = [round(n / o, 3) if o else None
                                             for o, n in zip(runs["old"], runs["new"], strict=True)]
            cpu = {k: statistics.fmean(v) for k, v in cpu_us.items() if v}
            row["mean_cpu_us_per_msg"] = {k: round(v, 2) for k, v in cpu.items()}
            row["cpu_new_over_old"] = round(cpu["new"] / cpu["old"], 3) if cpu["old"] else None
            if mean.get("mosquitto"):
                row["over_mosquitto"] = {k: round(mean[k] / mean["mosquitto"], 3)
                                         for k in ("old", "new")}
            results[name] = row
    report = {"old": str(a.old), "new": str(a.new), "implementation": impl,
              "rounds": a.rounds, "duration_s": a.duration, "uvloop": have_uvloop,
              "scenarios": results}
    if a.json:
        print(json.dumps(report))
        return
    print()
    for name, row in results.items():
        print(f"{name:12s} old {row['mean']['old']:8d}  new {row['mean']['new']:8d} msg/s  "
              f"new/old x{row['new_over_old']} (per round {row['new_over_old_per_round']}); "
              f"CPU/msg old {row['mean_cpu_us_per_msg']['old']} us, new "
              f"{row['mean_cpu_us_per_msg']['new']} us: x{row['cpu_new_over_old']}")


if __name__ == "__main__":
    main()

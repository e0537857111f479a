"""Broker A/B: source trees of qosinspect (say, before and after a change) under the same load,
interleaved (old, new, mosquitto; old, new, mosquitto; ...), so that a change of load on a
shared machine hits all of them alike. Same load generator and scenarios as ``broker.py``.

Why interleaved: on a shared machine the absolute msg/s moves by 20 % from one minute to the
next; two runs of one tree and then two of the other measure the machine, not the change.
mosquitto runs in every round too, so each tree also gets its ratio to a fixed peer. Besides
msg/s, each run gives the broker's user and system CPU time per delivered message (from
``/proc``, read before and after the load), which other engineers' load moves less than msg/s
(``broker_inproc.py`` is steadier still: no sockets, no load generator).

    git worktree add --detach ../wt-old ff505b6        # the tree to compare with
    python benchmarks/broker_ab.py --old ../wt-old      # this tree is "new"; 1->1 QoS 0, 1, 2
    python benchmarks/broker_ab.py --tree old=../wt-old --tree mid=../wt-mid --tree new=. \\
        --rounds 3 --only 1to1_qos1 --json

Each tree runs from its sources (``PYTHONPATH``); the C accelerator must be built in every one
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
MOSQUITTO = "mosquitto"


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


def cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _trees(a: argparse.Namespace) -> dict[str, Path]:
    trees: dict[str, Path] = {}
    if a.old is not None:
        trees["old"] = a.old
    for spec in a.tree:
        label, sep, path = spec.partition("=")
        if not sep or not label or label == MOSQUITTO or label in trees:
            raise SystemExit(f"--tree LABEL=PATH with a new label, not {spec!r}")
        trees[label] = Path(path)
    if a.old is not None and not a.tree:
        trees["new"] = ROOT
    if len(trees) < 2:
        raise SystemExit("two trees at least: --old PATH, or --tree LABEL=PATH twice")
    return trees


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, help="source tree of the old code (this tree is new)")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="a source tree to compare (repeatable; the first is the reference)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per scenario (default 2)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--only", default=DEFAULT, help=f"comma-separated scenarios ({DEFAULT})")
    ap.add_argument("--no-mosquitto", action="store_true", help="the trees only")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    if not GENERATOR.exists():
        raise SystemExit(f"the load generator {GENERATOR} is missing (../shared/bench)")
    known = dict(SCENARIOS)
    wanted = a.only.split(",")
    for name in wanted:
        if name not in known:
            raise SystemExit(f"unknown scenario {name!r} (one of {', '.join(known)})")
    trees = _trees(a)
    impl = {label: implementation(tree) for label, tree in trees.items()}
    reference = next(iter(trees))
    labels = [*trees] + ([] if a.no_mosquitto else [MOSQUITTO])
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
            runs: dict[str, list[int]] = {k: [] for k in labels}
            user: dict[str, list[float]] = {k: [] for k in labels}
            system: dict[str, list[float]] = {k: [] for k in labels}
            lost: dict[str, int] = {k: 0 for k in labels}
            for _ in range(a.rounds):
                for label in labels:
                    start = (lambda: mosquitto(tmp)) if label == MOSQUITTO else \
                        (lambda t=trees[label]: ours(t))
                    with start() as (port, pid):
                        u0, s0 = cpu_s(pid)
                        rec = summary(load(port, pid, tmp, duration=a.duration,
                                           uvloop=have_uvloop, **kw))
                        u1, s1 = cpu_s(pid)
                    n = rec["delivered"] or 1
                    runs[label].append(rec["msgs_per_s"])
                    user[label].append(round((u1 - u0) * 1e6 / n, 2))
                    system[label].append(round((s1 - s0) * 1e6 / n, 2))
                    lost[label] += rec["lost"]
                    if not a.json:
                        print(f"{name:12s} {label:9s} {rec['msgs_per_s']:8d} msg/s  CPU/msg user "
                              f"{user[label][-1]:6.2f} us, system {system[label][-1]:5.2f} us"
                              f"  lost {rec['lost']}", flush=True)
            mean = {k: statistics.fmean(v) for k, v in runs.items()}
            ref = mean[reference]
            row: dict[str, Any] = {
                "runs": runs, "user_us_per_msg": user, "system_us_per_msg": system,
                "lost": lost, "mean": {k: round(v) for k, v in mean.items()},
                "mean_user_us_per_msg": {k: round(statistics.fmean(v), 2)
                                         for k, v in user.items()},
                f"over_{reference}": {k: round(v / ref, 3) if ref else None
                                      for k, v in mean.items() if k != reference},
                # per round, so that a load change between rounds cancels out
                f"over_{reference}_per_round": {
                    k: [round(x / r, 3) if r else None
                        for x, r in zip(runs[k], runs[reference], strict=True)]
                    for k in labels if k != reference},
            }
            if mean.get(MOSQUITTO):
                row["over_mosquitto"] = {k: round(mean[k] / mean[MOSQUITTO], 3) for k in trees}
            results[name] = row
    report = {"trees": {k: str(v) for k, v in trees.items()}, "implementation": impl,
              "rounds": a.rounds, "duration_s": a.duration, "uvloop": have_uvloop,
              "scenarios": results}
    if a.json:
        print(json.dumps(report))
        return
    print()
    for name, row in results.items():
        means = "  ".join(f"{k} {v}" for k, v in row["mean"].items())
        cpu = "  ".join(f"{k} {v}" for k, v in row["mean_user_us_per_msg"].items())
        print(f"{name:12s} msg/s: {means}\n{'':12s} over {reference}: {row[f'over_{reference}']}"
              f"\n{'':12s} user CPU us/msg: {cpu}")


if __name__ == "__main__":
    main()

"""Diagnoses benchmark: what saying why (issue 16) costs the report, measured in the same run.

``qosinspect report``'s analysis (``analyze_capture(..., REPORT_OPTIONS).report()``) on the
decoder benchmark's large capture (``out/bench/mqtt_large.pcap``, see ``report.py``; or
``--capture FILE --port N``), each run in its own process, alternating with and without the
diagnoses (``AnalysisOptions(diagnose=False)``), ``--rounds`` times each. Figures: CPU seconds
(user + system of the child, from ``wait4``: the machine is shared, wall time is inflated) and
peak RSS; the result is the ratio of the medians. Exit status 0 either way.

    python benchmarks/diagnoses.py [--capture F --port N] [--rounds 3] [--json] [--pure]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
from dataclasses import replace
from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import REPORT_OPTIONS
opts = replace(REPORT_OPTIONS, diagnose=sys.argv[3] == "1")
r = analyze_capture(sys.argv[1], ports=(int(sys.argv[2]),), options=opts).report()
print(len(r["diagnoses"]), sum(d["exchanges"] for d in r["diagnoses"]))
"""


def _default_capture() -> tuple[Path, int]:
    for base in (ROOT, ROOT.parent / "main"):
        cap = base / "out" / "bench" / "mqtt_large.pcap"
        if cap.exists():
            port = cap.with_suffix(".pcap.port")
            return cap, int(port.read_text()) if port.exists() else 1883
    sys.exit("no out/bench/mqtt_large.pcap: run benchmarks/report.py once, or give --capture")


def _run(capture: Path, port: int, diagnose: bool, pure: bool) -> dict[str, float | str]:
    env = dict(os.environ)
    if pure:
        env["QOSINSPECT_PURE"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(capture), str(port),
                             "1" if diagnose else "0"], stdout=subprocess.PIPE, env=env,
                            text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        sys.exit(f"the analysis failed (status {status})")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "found": out.strip()}


def main(argv: list[str]) -> None:
    args = dict(zip(argv[::2], argv[1::2], strict=False))
    flags = set(argv)
    if "--capture" in args:
        capture, port = Path(args["--capture"]), int(args.get("--port", 1883))
    else:
        capture, port = _default_capture()
    rounds = int(args.get("--rounds", 3))
    pure = "--pure" in flags
    runs: dict[str, list[dict[str, float | str]]] = {"with": [], "without": []}
    for _ in range(rounds):
        runs["without"].append(_run(capture, port, False, pure))
        runs["with"].append(_run(capture, port, True, pure))
    med = {k: statistics.median(float(r["cpu_s"]) for r in v) for k, v in runs.items()}
    rss = {k: max(float(r["rss_mb"]) for r in v) for k, v in runs.items()}
    result = {"capture": str(capture), "rounds": rounds, "pure": pure,
              "cpu_s_median": med, "rss_mb_max": rss,
              "ratio_with_over_without": round(med["with"] / med["without"], 3),
              "found": runs["with"][0]["found"]}
    if "--json" in flags:
        print(json.dumps(result))
    else:
        for k in ("without", "with"):
            print(f"{k:>8} diagnoses: CPU {med[k]:.2f} s (median of {rounds}), "
                  f"peak RSS {rss[k]:.0f} MB")
        print(f"ratio with/without: {result['ratio_with_over_without']}")


if __name__ == "__main__":
    main(sys.argv[1:])

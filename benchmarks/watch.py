"""``qosinspect watch`` benchmark: how many packets per second it keeps up with from a pipe.

The capture is the large one of the other benchmarks (``../shared/bench/make_capture.sh large``,
cached as ``out/bench/mqtt_large.pcap``) or ``--capture FILE --port N``. Measured in one run,
each as its own process (wall time, and peak RSS from ``wait4``):

* ``watch``: ``qosinspect watch - --format jsonl --report-format json`` reading the capture from
  a pipe as fast as ``cat`` writes it (a pipe that fills makes the writer wait: the rate it
  sustains is the most it keeps up with). JSON lines go to ``/dev/null``.
* ``report``: ``qosinspect report --format json CAPTURE`` on the file (the C record walk where it
  is built): the same analysis, not live; the peer of the ratio.
* ``cat``: the pipe alone (``cat CAPTURE > /dev/null``), the ceiling of the feeding side.

Throughput is capture frames per second, of wall time and of the process's CPU time (on a
shared machine the CPU figure is the one that says what one core keeps up with). ``--json``
prints one JSON object.

    python benchmarks/watch.py --capture out/bench/mqtt_large.pcap --port 18830 --json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _capture import (
    CPU,
    argument_parser,
    count_frames,
    ensure_capture,
    log,
    qosinspect_command,
    run_measured,
)


def piped(capture: str, cmd: list[str]) -> tuple[float, float, int]:
    """``cat capture | cmd`` : (wall seconds, peak RSS MB of cmd, exit status)."""
    t0 = time.perf_counter()
    cat = subprocess.Popen(["cat", capture], stdout=subprocess.PIPE)
    proc = subprocess.Popen(cmd, stdin=cat.stdout, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert cat.stdout is not None
    cat.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    cat.wait()
    CPU["watch"] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    args = argument_parser(__doc__).parse_args()
    capture, port = ensure_capture(args)
    frames = count_frames(capture)
    exe = qosinspect_command()
    env = {"QOSINSPECT_PURE": "1"} if args.pure else None
    log(f"{capture}: {frames:,} frames, port {port}")
    cat_wall, _, _ = run_measured(["cat", str(capture)], key="cat")
    w_wall, w_rss, w_rc = piped(str(capture), [exe, "watch", "-", "-p", str(port),
                                               "--format", "jsonl", "--report-format", "json",
                                               "--report", "/dev/null"])
    r_wall, r_rss, r_rc = run_measured([exe, "report", "--format", "json", "-p", str(port),
                                        str(capture)], env=env, key="report")
    if w_rc or r_rc:
        sys.exit(f"a command failed: watch {w_rc}, report {r_rc}")
    out = {
        "capture": str(capture), "frames": frames,
        "watch_pipe_s": round(w_wall, 3), "watch_frames_per_s": round(frames / w_wall),
        "watch_peak_rss_mb": round(w_rss, 1), "watch_cpu_s": round(CPU["watch"], 3),
        "watch_frames_per_cpu_s": round(frames / CPU["watch"]),
        "report_file_s": round(r_wall, 3), "report_frames_per_s": round(frames / r_wall),
        "report_peak_rss_mb": round(r_rss, 1), "report_cpu_s": round(CPU["report"], 3),
        "cat_s": round(cat_wall, 3), "cat_frames_per_s": round(frames / cat_wall),
        "watch_vs_report": round(r_wall / w_wall, 3),
        "watch_vs_report_cpu": round(CPU["report"] / CPU["watch"], 3),
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"watch from a pipe : {w_wall:7.2f} s  {frames / w_wall:12,.0f} frames/s  "
          f"peak RSS {w_rss:6.1f} MB")
    print(f"report on the file: {r_wall:7.2f} s  {frames / r_wall:12,.0f} frames/s  "
          f"peak RSS {r_rss:6.1f} MB")
    print(f"cat (the pipe)    : {cat_wall:7.2f} s  {frames / cat_wall:12,.0f} frames/s")
    print(f"watch / report throughput: {r_wall / w_wall:.2f}x (CPU seconds: "
          f"{CPU['report'] / CPU['watch']:.2f}x; {frames / CPU['watch']:,.0f} frames per CPU "
          "second of watch)")


if __name__ == "__main__":
    main()

"""Report benchmark: ``qosinspect report`` end to end against tshark's field extraction, same run.

The capture is the decoder benchmark's: at least a million packets of mixed QoS 0/1/2 traffic
between real peers, recorded by ``../shared/bench/make_capture.sh large`` (about 4 minutes; needs
root, tcpdump and mosquitto) and cached as ``out/bench/mqtt_large.pcap`` (``out/`` is
git-ignored), or given with ``--capture FILE [--port N]``.

What is measured, each as its own process (wall time, and peak RSS from ``wait4`` of that
process), one after the other:

* ``qosinspect``: ``qosinspect report --format json --port N CAPTURE`` -- the whole command:
  reading, reassembly, MQTT decoding, correlation of every exchange, connection, session,
  reconnection and end-to-end delivery, and the per-QoS report. The ratio is computed from it.
* ``library``: ``analyze_capture(CAPTURE, options=REPORT_OPTIONS).report()`` in a bare
  interpreter (the same work without the CLI's imports).
* ``pure``: the same ``qosinspect report`` with ``QOSINSPECT_PURE=1``: the analysis
  interpreted and the byte-level C off (what a machine without a compiler runs).
* ``detail``: ``qosinspect flows --format parquet -o FILE`` (the detail mode: every column,
  every exchange written), compiled and pure.
* ``tshark``: ``tshark -n -r CAPTURE -d tcp.port==N,mqtt -Y mqtt -T fields`` with the fields a
  QoS report needs (time, stream, source port, message type, QoS, DUP, packet id), written to a
  file -- only the extraction: tshark pairs nothing, so this is less work than a report.

With ``--scale N`` (issue 14, "one huge capture in bounded memory") it measures instead
``qosinspect report --format json`` on the capture and on the capture played N times in a row
(each copy shifted to start a second after the previous one's last packet:
:func:`qosinspect.testing.concat.concatenate_shifted`, cached as
``out/bench/<capture>.xN.pcap``): wall time, CPU seconds and peak RSS of each, and the growth.
Target: peak RSS at 5x within 10 % of 1x, and under 150 MB. ``--scale-command batch`` measures
``qosinspect batch CAPTURE -o TMP --jobs 1`` instead (one capture, in the batch process: the
detail analysis, every table written to Parquet a block at a time by
:class:`qosinspect.analysis.spool.RowSpool`).

Throughput is capture packets (frames) per second. Targets (issues 5 and 10): qosinspect at least
8x tshark's throughput, peak RSS at most 150 MB. The line counts of the C sources and of the
analysis are printed too (issue 10: the analysis exists once, in Python). The exit status is 0
either way: the figures are the result.

    python benchmarks/report.py                       # build or reuse the large capture
    python benchmarks/report.py --capture F --port N  # a given capture
    python benchmarks/report.py --json                # one JSON object
    python benchmarks/report.py --pure                # everything with QOSINSPECT_PURE=1
    python benchmarks/report.py --scale 5 [--json]    # 1x against 5x: bounded memory
    python benchmarks/report.py --scale 5 --scale-command batch [--json]   # the same, batch
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _capture import (
    CPU,
    ROOT,
    analysis_implementation,
    argument_parser,
    count_frames,
    ensure_capture,
    implementation,
    log,
    qosinspect_command,
    run_measured,
)

TARGET_RATIO = 8.0
TARGET_RSS_MB = 150.0
#: --scale: peak RSS at Nx at most this much above 1x (issue 14: 10 %).
TARGET_SCALE_GROWTH = 0.10

LIBRARY = """
import json, sys
from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import REPORT_OPTIONS
report = analyze_capture(sys.argv[1], ports=(int(sys.argv[2]),), options=REPORT_OPTIONS).report()
print(json.dumps(report))
"""


def source_lines(folder: Path, patterns: tuple[str, ...]) -> int:
    """Lines of the files matching ``patterns`` in ``folder``."""
    return sum(len(f.read_text().splitlines()) for pattern in patterns
               for f in folder.glob(pattern))


def tshark_publish_counts(out: Path) -> dict[str, int]:
    """PUBLISH packets by QoS in tshark's output, and how many had DUP=1."""
    counts: Counter[str] = Counter()
    with out.open() as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            types, qos, dup = cols[3].split(","), cols[4].split(","), cols[5].split(",")
            qi = di = 0
            for t in types:
                if t == "3":
                    q = qos[qi] if qi < len(qos) else "?"
                    d = dup[di] if di < len(dup) else "?"
                    qi += 1
                    di += 1
                    counts[f"q{q}"] += 1
                    if d in ("1", "True"):
                        counts[f"q{q}_dup"] += 1
    return dict(sorted(counts.items()))


def _batch_exchanges(root: Path) -> int:
    """Rows of the exchanges table of a dataset of one capture (from the Parquet footers)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows
               for f in sorted((root / "exchanges").rglob("*.parquet")))


def scaled(path: Path, port: int, n: int, env: dict[str, str] | None,
           command: str = "report") -> dict[str, object]:
    """``report`` (or ``batch``) on ``path`` and on ``path`` played ``n`` times (built once,
    cached beside it): wall, CPU and peak RSS of each (see the module docstring)."""
    from qosinspect.testing.concat import concatenate_shifted

    big = path.with_name(f"{path.stem}.x{n}{path.suffix}")
    if not big.exists() or big.stat().st_mtime < path.stat().st_mtime:
        log(f"writing {big} ({n} copies, shifted) ...")
        concatenate_shifted(path, big, n)
    qosinspect = qosinspect_command()
    runs = {}
    for label, capture in (("1x", path), (f"{n}x", big)):
        if command == "batch":
            log(f"qosinspect batch --jobs 1 ({label}) ...")
            with tempfile.TemporaryDirectory() as tmp:
                wall, rss, rc = run_measured(
                    [qosinspect, "batch", str(capture), "-o", str(Path(tmp) / "ds"), "--jobs",
                     "1", "--port", str(port)], env=env, key=label)
                if rc:
                    sys.exit(f"qosinspect batch ({label}) failed with status {rc}")
                exchanges = _batch_exchanges(Path(tmp) / "ds")
            runs[label] = {"capture": str(capture), "frames": count_frames(capture),
                           "wall_s": round(wall, 3), "cpu_s": round(CPU[label], 3),
                           "peak_rss_mb": round(rss, 1), "exchanges": exchanges}
            continue
        log(f"qosinspect report --format json ({label}) ...")
        with tempfile.TemporaryFile() as out:
            wall, rss, rc = run_measured([qosinspect, "report", "--format", "json", "--port",
                                          str(port), str(capture)], stdout=out, env=env,
                                         key=label)
            if rc:
                sys.exit(f"qosinspect report ({label}) failed with status {rc}")
            out.seek(0)
            report = json.loads(out.read())
        runs[label] = {"capture": str(capture), "frames": count_frames(capture),
                       "wall_s": round(wall, 3), "cpu_s": round(CPU[label], 3),
                       "peak_rss_mb": round(rss, 1),
                       "exchanges": sum(r["publishes"] for r in report["per_qos"]),
                       "sketched": report["percentiles"]["sketched"]}
    one, big_run = runs["1x"], runs[f"{n}x"]
    growth = (float(big_run["peak_rss_mb"]) - float(one["peak_rss_mb"])) / float(
        one["peak_rss_mb"])
    return {"command": command, "scale": n, "runs": runs, "rss_growth": round(growth, 4),
            "target_growth": TARGET_SCALE_GROWTH, "target_rss_mb": TARGET_RSS_MB,
            "meets_growth": growth <= TARGET_SCALE_GROWTH,
            "meets_rss": float(big_run["peak_rss_mb"]) <= TARGET_RSS_MB,
            "cpu_per_frame_ratio": round((float(big_run["cpu_s"]) / int(big_run["frames"]))
                                         / (float(one["cpu_s"]) / int(one["frames"])), 3),
            "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argument_parser(__doc__)
    ap.add_argument("--scale", type=int, metavar="N",
                    help="measure report at 1x and at N copies of the capture (memory bound)")
    ap.add_argument("--scale-command", choices=("report", "batch"), default="report",
                    help="with --scale: the command measured (default report)")
    args = ap.parse_args()
    path, port = ensure_capture(args)
    impl = implementation(args)
    if args.scale:
        figures = scaled(path, port, args.scale, {"QOSINSPECT_PURE": "1"} if args.pure else None,
                         args.scale_command)
        figures.update(implementation=impl, analysis=analysis_implementation(args))
        if args.json:
            print(json.dumps(figures))
            return
        for label, run in figures["runs"].items():  # type: ignore[attr-defined]
            print(f"{args.scale_command} {label:>4}  {run['frames']:>10,} frames  "
                  f"{run['exchanges']:>10,} exchanges  wall {run['wall_s']:7.2f} s  "
                  f"CPU {run['cpu_s']:7.2f} s  "
                  f"peak RSS {run['peak_rss_mb']:6.1f} MB")
        print(f"peak RSS growth {figures['rss_growth']:+.1%} (target <= "
              f"{TARGET_SCALE_GROWTH:.0%}: {'met' if figures['meets_growth'] else 'NOT met'}); "
              f"under {TARGET_RSS_MB:.0f} MB: {'met' if figures['meets_rss'] else 'NOT met'}; "
              f"CPU per frame {figures['cpu_per_frame_ratio']}x of 1x")
        return
    tshark = shutil.which("tshark")
    if tshark is None:
        sys.exit("tshark is not installed")
    qosinspect = qosinspect_command()
    frames = count_frames(path)
    log(f"{path}: {frames:,} packets, {path.stat().st_size / 1e6:.0f} MB, broker port {port}")

    with tempfile.TemporaryDirectory() as tmp:
        log("qosinspect report --format json ...")
        report_out = Path(tmp) / "report.json"
        with report_out.open("w") as out:
            q_s, q_rss, rc = run_measured([qosinspect, "report", "--format", "json", "--port",
                                           str(port), str(path)], stdout=out)
        if rc:
            sys.exit(f"qosinspect report failed with status {rc}")
        report = json.loads(report_out.read_text())

        log("library analyze_capture(options=REPORT_OPTIONS).report() ...")
        with (Path(tmp) / "lib.json").open("w") as out:
            l_s, l_rss, rc = run_measured([sys.executable, "-c", LIBRARY, str(path), str(port)],
                                          stdout=out)
        if rc:
            sys.exit(f"library run failed with status {rc}")

        pure_env = {"QOSINSPECT_PURE": "1"}
        log("QOSINSPECT_PURE=1 qosinspect report --format json ...")
        pure_out = Path(tmp) / "pure.json"
        with pure_out.open("w") as out:
            p_s, p_rss, rc = run_measured([qosinspect, "report", "--format", "json", "--port",
                                           str(port), str(path)], stdout=out, env=pure_env,
                                          key="pure")
        if rc:
            sys.exit(f"pure qosinspect report failed with status {rc}")
        same_report = pure_out.read_bytes() == report_out.read_bytes()

        detail: dict[str, tuple[float, float]] = {}
        for label, env in (("compiled", None), ("pure", pure_env)):
            log(f"qosinspect flows --format parquet ({label}) ...")
            d_s, d_rss, rc = run_measured(
                [qosinspect, "flows", "--format", "parquet", "--port", str(port), "-o",
                 str(Path(tmp) / f"flows-{label}.parquet"), str(path)], env=env,
                key=f"flows-{label}")
            if rc:
                sys.exit(f"qosinspect flows ({label}) failed with status {rc}")
            detail[label] = (d_s, d_rss)
        same_flows = ((Path(tmp) / "flows-compiled.parquet").read_bytes()
                      == (Path(tmp) / "flows-pure.parquet").read_bytes())

        log("tshark -Y mqtt -T fields ...")
        tsv = Path(tmp) / "tshark.tsv"
        with tsv.open("w") as out:
            t_s, t_rss, rc = run_measured(
                [tshark, "-n", "-r", str(path), "-d", f"tcp.port=={port},mqtt", "-Y", "mqtt",
                 "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.stream", "-e",
                 "tcp.srcport", "-e", "mqtt.msgtype", "-e", "mqtt.qos", "-e", "mqtt.dupflag",
                 "-e", "mqtt.msgid", "-E", "occurrence=a"], stdout=out)
        if rc:
            sys.exit(f"tshark failed with status {rc}")
        t_pub = tshark_publish_counts(tsv)

    ratio = t_s / q_s
    ours = {f"q{r['qos']}": r["publishes"] for r in report["per_qos"]}
    ours.update({f"q{r['qos']}_dup": r["dup_flagged"] for r in report["per_qos"]})
    figures = {
        "capture": str(path), "frames": frames, "bytes": path.stat().st_size,
        "mqtt_packets": report["capture"].get("mqtt_packets"),
        "qosinspect_s": round(q_s, 3), "qosinspect_rss_mb": round(q_rss, 1),
        "qosinspect_frames_per_s": round(frames / q_s),
        "library_s": round(l_s, 3), "library_rss_mb": round(l_rss, 1),
        "tshark_s": round(t_s, 3), "tshark_rss_mb": round(t_rss, 1),
        "tshark_frames_per_s": round(frames / t_s),
        "ratio_vs_tshark": round(ratio, 2),
        "target_ratio": TARGET_RATIO, "target_rss_mb": TARGET_RSS_MB,
        "meets_ratio": ratio >= TARGET_RATIO, "meets_rss": q_rss <= TARGET_RSS_MB,
        "publishes_ours": ours, "publish_packets_tshark": t_pub,
        "exchanges": sum(r["publishes"] for r in report["per_qos"]),
        "connections": report["connections"], "reconnects": report["reconnects"],
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        "implementation": impl, "analysis": analysis_implementation(args),
        "qosinspect_cpu_s": round(CPU[qosinspect], 3), "tshark_cpu_s": round(CPU[tshark], 3),
        "cpu_ratio": round(CPU[tshark] / CPU[qosinspect], 2),
        "pure_s": round(p_s, 3), "pure_rss_mb": round(p_rss, 1),
        "pure_ratio_vs_tshark": round(t_s / p_s, 2), "pure_report_identical": same_report,
        "flows_parquet_s": round(detail["compiled"][0], 3),
        "flows_parquet_rss_mb": round(detail["compiled"][1], 1),
        "flows_parquet_pure_s": round(detail["pure"][0], 3),
        "flows_parquet_pure_rss_mb": round(detail["pure"][1], 1),
        "flows_parquet_identical": same_flows,
        "lines_c": source_lines(ROOT / "qosinspect" / "_csrc", ("*.c", "*.h")),
        "lines_analysis": source_lines(ROOT / "qosinspect" / "analysis", ("*.py",)),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"capture            {path} ({frames:,} frames, {figures['bytes'] / 1e6:.0f} MB); "
          f"C accelerator {impl}, analysis {figures['analysis']}")
    print(f"qosinspect report  {q_s:8.2f} s  {frames / q_s:>10,.0f} frames/s  "
          f"peak RSS {q_rss:6.1f} MB")
    print(f"  (library alone   {l_s:8.2f} s  {frames / l_s:>10,.0f} frames/s  "
          f"peak RSS {l_rss:6.1f} MB)")
    print(f"tshark -T fields   {t_s:8.2f} s  {frames / t_s:>10,.0f} frames/s  "
          f"peak RSS {t_rss:6.1f} MB")
    print(f"ratio              {ratio:.2f}x tshark's throughput (target {TARGET_RATIO:.0f}x: "
          f"{'met' if figures['meets_ratio'] else 'NOT met'}); peak RSS target "
          f"{TARGET_RSS_MB:.0f} MB: {'met' if figures['meets_rss'] else 'NOT met'}")
    print(f"CPU seconds        qosinspect {CPU[qosinspect]:.2f} s, tshark {CPU[tshark]:.2f} s: "
          f"{figures['cpu_ratio']}x")
    print(f"pure report        {p_s:8.2f} s  {frames / p_s:>10,.0f} frames/s  "
          f"peak RSS {p_rss:6.1f} MB  ({figures['pure_ratio_vs_tshark']}x tshark; "
          f"JSON {'identical' if same_report else 'DIFFERENT'})")
    print(f"flows --format parquet  compiled {detail['compiled'][0]:.2f} s "
          f"({detail['compiled'][1]:.0f} MB), pure {detail['pure'][0]:.2f} s "
          f"({detail['pure'][1]:.0f} MB); files {'identical' if same_flows else 'DIFFERENT'}")
    print(f"source lines       C {figures['lines_c']:,}, analysis {figures['lines_analysis']:,}")
    print(f"exchanges          {figures['exchanges']:,} (ours, by QoS: {ours}); tshark's "
          f"PUBLISH packets: {t_pub}")
    print(f"machine            {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(other work on the machine slows every figure)")


if __name__ == "__main__":
    main()

"""Audit benchmark: ``qosinspect audit CAPTURE`` end to end against tshark's extraction of the
fields a passive MQTT audit reads, same run.

mqttsa, the one peer that audits traffic, sniffs with tshark; so the peer here is tshark
extracting what a passive audit needs from every MQTT packet (client id, user name, password
length, CONNACK code, topic or filter, payload) -- extraction only, no check made,
so less work than an audit. ``qosinspect report`` on the same capture is measured too: the
audit runs the same analysis plus its checks, the secret search and a TLS pass over the file.

The capture is the decoder benchmark's (``out/bench/mqtt_large.pcap``, recorded on first use
by ``../shared/bench/make_capture.sh large``) or ``--capture FILE --port N``. Each program runs
as its own process (wall time, peak RSS, CPU seconds). The exit status is 0 either way.

    python benchmarks/audit.py [--capture F --port N] [--json] [--pure]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from _capture import CPU, argument_parser, log, prepare, run_json, run_measured

TSHARK_FIELDS = ("frame.number", "tcp.stream", "mqtt.msgtype", "mqtt.clientid", "mqtt.username",
                 "mqtt.passwd_len", "mqtt.conack.val", "mqtt.topic", "mqtt.msg")


def main() -> None:
    args = argument_parser(__doc__).parse_args()
    run = prepare(args)
    path, port, impl, tshark, qosinspect, frames = (run.path, run.port, run.implementation,
                                                    run.tshark, run.qosinspect, run.frames)
    with tempfile.TemporaryDirectory() as tmp:
        log("qosinspect audit --format json ...")
        a_s, a_rss, audit = run_json([qosinspect, "audit", "--format", "json", "--port",
                                      str(port), str(path)], Path(tmp) / "audit.json")
        a_cpu = CPU[qosinspect]
        log("qosinspect report --format json ...")
        r_s, r_rss, rc = run_measured([qosinspect, "report", "--format", "json", "--port",
                                       str(port), str(path)])
        if rc:
            sys.exit(f"qosinspect report failed with status {rc}")
        log("tshark -Y mqtt -T fields (audit fields) ...")
        cmd = [tshark, "-n", "-r", str(path), "-d", f"tcp.port=={port},mqtt", "-Y", "mqtt",
               "-T", "fields", "-E", "occurrence=a"]
        for f in TSHARK_FIELDS:
            cmd += ["-e", f]
        with (Path(tmp) / "tshark.tsv").open("w") as out:
            t_s, t_rss, rc = run_measured(cmd, stdout=out)
        if rc:
            sys.exit(f"tshark failed with status {rc}")
    figures = {
        "capture": str(path), "frames": frames, "bytes": path.stat().st_size,
        "audit_s": round(a_s, 3), "audit_rss_mb": round(a_rss, 1),
        "audit_frames_per_s": round(frames / a_s), "audit_cpu_s": round(a_cpu, 3),
        "report_s": round(r_s, 3), "report_rss_mb": round(r_rss, 1),
        "tshark_s": round(t_s, 3), "tshark_rss_mb": round(t_rss, 1),
        "tshark_cpu_s": round(CPU[tshark], 3),
        "ratio_vs_tshark": round(t_s / a_s, 2), "audit_over_report": round(a_s / r_s, 2),
        "findings": audit["counts"], "finding_ids": sorted({f["id"] for f in audit["findings"]}),
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        "implementation": impl,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"capture            {path} ({frames:,} frames); implementation {impl}")
    print(f"qosinspect audit   {a_s:8.2f} s  {frames / a_s:>10,.0f} frames/s  "
          f"peak RSS {a_rss:6.1f} MB")
    print(f"qosinspect report  {r_s:8.2f} s  peak RSS {r_rss:6.1f} MB "
          f"(audit/report {figures['audit_over_report']}x)")
    print(f"tshark -T fields   {t_s:8.2f} s  peak RSS {t_rss:6.1f} MB")
    print(f"ratio              {figures['ratio_vs_tshark']}x tshark's extraction")
    print(f"findings           {audit['counts']}: {', '.join(figures['finding_ids'])}")
    print(f"machine            {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Capture decoder benchmark: ``qosinspect decode`` against ``tshark -Y mqtt -T fields``, same run.

The capture is at least a million packets of mixed QoS 0/1/2 traffic between real peers
(mosquitto, mosquitto_pub/sub, paho clients), recorded by ``../shared/bench/make_capture.sh large``
(about 4 minutes; needs root, tcpdump and mosquitto) and cached as ``out/bench/mqtt_large.pcap``
(``out/`` is git-ignored), or given with ``--capture FILE [--port N]``.

What is measured, each as its own process (wall time, and peak RSS from ``wait4`` of that
process):

* ``qosinspect``: ``qosinspect decode --format jsonl --port N CAPTURE > /dev/null`` -- the whole
  command: reading, reassembly, MQTT decoding, and one JSON line per packet and anomaly written
  out. This is the figure the ratio is computed from.
* ``library``: ``iter_events(CAPTURE)`` consumed by a loop that only counts packets by type (a
  null sink): the decoder alone, as the analysis uses it.
* ``tshark``: ``tshark -n -r CAPTURE -d tcp.port==N,mqtt -Y mqtt -T fields -e mqtt.msgtype
  -e mqtt.qos -e mqtt.dupflag -E occurrence=a`` writing to a file (counted afterwards, untimed).

Throughput is capture packets (frames) per second. The MQTT packet counts of both decoders are
printed too; they differ where tshark 4.0 mis-frames streams after TCP zero-window episodes (it
then reports packet types read from payload bytes: type 0, PUBLISH with QoS 3).

    python benchmarks/decode.py                       # build or reuse the large capture
    python benchmarks/decode.py --capture F --port N  # a given capture
    python benchmarks/decode.py --json                # one JSON object
    python benchmarks/decode.py --agree               # also compare packet types per frame
    python benchmarks/decode.py --pure                # with QOSINSPECT_PURE=1 (no C accelerator)

``implementation`` says which path qosinspect ran: ``c`` (qosinspect._speedups, used when the
package was built with a compiler) or ``python``.

``--agree`` (untimed) compares, frame by frame, the MQTT packet types of both decoders, with
tshark's out-of-order reassembly turned on (``-o tcp.reassemble_out_of_order:TRUE``; off by
default in 4.0, which then skips the bytes of a segment that fills a hole), and lists the frames
that differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from _capture import (
    CPU,
    argument_parser,
    count_frames,
    ensure_capture,
    implementation,
    log,
    qosinspect_command,
    run_measured,
)

TYPES = ("RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
         "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
         "AUTH")

LIBRARY_SINK = """
import json, sys
from collections import Counter
from collections.abc import Iterator
from qosinspect.capture import iter_events
from qosinspect.events import MqttPacketEvent
types = Counter()
stream = iter_events(sys.argv[1], ports=(int(sys.argv[2]),))
for ev in stream:
    if type(ev) is MqttPacketEvent:
        types[ev.packet.packet_type.name] += 1
print(json.dumps({"types": types, "anomalies": stream.summary.anomalies,
                  "frames": stream.summary.frames}))
"""


def tshark_counts(out: Path) -> Counter[str]:
    types: Counter[str] = Counter()
    with out.open() as f:
        for line in f:
            field = line.split("\t", 1)[0].strip()
            for t in field.split(","):
                if t.isdigit():
                    types[TYPES[int(t)] if int(t) < 16 else t] += 1
    return types


def agreement(path: Path, port: int, tshark: str, show: int = 8) -> dict[str, object]:
    """Frames whose MQTT packet types differ between tshark and qosinspect (streamed, O(1)
    memory: both lists are in frame order)."""
    from itertools import groupby

    from qosinspect.capture import iter_events
    from qosinspect.events import MqttPacketEvent

    cmd = [tshark, "-n", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE", "-d",
           f"tcp.port=={port},mqtt", "-Y", "mqtt", "-T", "fields", "-e", "frame.number", "-e",
           "mqtt.msgtype", "-E", "occurrence=a"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None

    def theirs() -> Iterator[tuple[int, list[str]]]:
        for line in proc.stdout:  # type: ignore[union-attr]
            frame, _, types = line.rstrip("\n").partition("\t")
            yield int(frame), [TYPES[int(t)] for t in types.split(",") if t.isdigit()]

    def ours() -> Iterator[tuple[int, list[str]]]:
        events = (e for e in iter_events(path, ports=(port,)) if type(e) is MqttPacketEvent)
        for frame, evs in groupby(events, key=lambda e: e.frame):
            yield frame, [e.packet.packet_type.name for e in evs]

    differ: list[tuple[int, list[str], list[str]]] = []
    a, b = theirs(), ours()
    x, y = next(a, None), next(b, None)
    frames = 0
    while x is not None or y is not None:
        frames += 1
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            differ.append((x[0], x[1], []))
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            differ.append((y[0], [], y[1]))
            y = next(b, None)
        else:
            if x[1] != y[1]:
                differ.append((x[0], x[1], y[1]))
            x, y = next(a, None), next(b, None)
    proc.wait()
    for frame, t, o in differ[:show]:
        log(f"  frame {frame}: tshark {dict(Counter(t))}  qosinspect {dict(Counter(o))}")
    return {"frames_with_mqtt": frames, "frames_differ": len(differ),
            "differ_at": [d[0] for d in differ[:50]]}


def main() -> None:
    ap = argument_parser(__doc__)
    ap.add_argument("--agree", action="store_true", help="also compare packet types per frame "
                    "with tshark (untimed)")
    args = ap.parse_args()
    path, port = ensure_capture(args)
    impl = implementation(args)
    tshark = shutil.which("tshark")
    if tshark is None:
        sys.exit("tshark is not installed")
    qosinspect = qosinspect_command()
    frames = count_frames(path)
    log(f"{path}: {frames:,} packets, {path.stat().st_size / 1e6:.0f} MB, broker port {port}")

    log("qosinspect decode --format jsonl ...")
    q_s, q_rss, rc = run_measured([qosinspect, "decode", "--format", "jsonl", "--port",
                                   str(port), str(path)])
    if rc:
        sys.exit(f"qosinspect decode failed with status {rc}")

    log("library iter_events, null sink ...")
    with tempfile.TemporaryFile("w+") as out:
        l_s, l_rss, rc = run_measured([sys.executable, "-c", LIBRARY_SINK, str(path),
                                       str(port)], stdout=out)
        out.seek(0)
        lib = json.loads(out.read() or "{}")
    if rc:
        sys.exit(f"library run failed with status {rc}")

    log("tshark -Y mqtt -T fields ...")
    with tempfile.NamedTemporaryFile("w+", suffix=".tsv") as out:
        t_s, t_rss, rc = run_measured([tshark, "-n", "-r", str(path), "-d",
                                       f"tcp.port=={port},mqtt", "-Y", "mqtt", "-T", "fields",
                                       "-e", "mqtt.msgtype", "-e", "mqtt.qos", "-e",
                                       "mqtt.dupflag", "-E", "occurrence=a"], stdout=out)
        if rc:
            sys.exit(f"tshark failed with status {rc}")
        t_types = tshark_counts(Path(out.name))

    ours = Counter(lib.get("types", {}))
    fig = {
        "packets": frames,
        "qosinspect_s": round(q_s, 3),
        "qosinspect_rss_mb": round(q_rss, 1),
        "tshark_s": round(t_s, 3),
        "tshark_rss_mb": round(t_rss, 1),
        "ratio": round(t_s / q_s, 2),
        "qosinspect_packets_per_s": round(frames / q_s),
        "tshark_packets_per_s": round(frames / t_s),
        "library_s": round(l_s, 3),
        "library_rss_mb": round(l_rss, 1),
        "library_ratio": round(t_s / l_s, 2),
        "mqtt_packets_qosinspect": sum(ours.values()),
        "mqtt_packets_tshark": sum(t_types.values()),
        "anomalies_qosinspect": lib.get("anomalies"),
        "implementation": impl,
        "qosinspect_cpu_s": round(CPU[qosinspect], 3),
        "tshark_cpu_s": round(CPU[tshark], 3),
        "cpu_ratio": round(CPU[tshark] / CPU[qosinspect], 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "measured": "qosinspect = `qosinspect decode --format jsonl` to /dev/null; library = "
                    "iter_events with a counting null sink; tshark = -Y mqtt -T fields",
    }
    if args.agree:
        log("agreement per frame (tshark with out-of-order reassembly) ...")
        fig["agreement"] = agreement(path, port, tshark)
    if args.json:
        print(json.dumps(fig))
        return
    print(f"capture: {path} ({frames:,} packets, broker port {port}); qosinspect "
          f"implementation: {impl}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'':34}{'wall s':>9}{'packets/s':>12}{'peak RSS MB':>13}")
    for name, s, rss in (("qosinspect decode --format jsonl", q_s, q_rss),
                         ("qosinspect library (null sink)", l_s, l_rss),
                         ("tshark -Y mqtt -T fields", t_s, t_rss)):
        print(f"{name:34}{s:9.2f}{frames / s:12,.0f}{rss:13.1f}")
    print(f"ratio (tshark time / qosinspect time): decode {t_s / q_s:.2f}x, "
          f"library {t_s / l_s:.2f}x; in CPU seconds: decode {CPU[qosinspect]:.2f} s, "
          f"tshark {CPU[tshark]:.2f} s, {fig['cpu_ratio']}x")
    print(f"MQTT packets: qosinspect {sum(ours.values()):,}, tshark {sum(t_types.values()):,}")
    for t in TYPES:
        if ours.get(t) != t_types.get(t) and (ours.get(t) or t_types.get(t)):
            print(f"  {t:12} qosinspect {ours.get(t, 0):>9,}  tshark {t_types.get(t, 0):>9,}")
    if args.agree:
        ag = fig["agreement"]
        assert isinstance(ag, dict)
        print(f"frames with MQTT: {ag['frames_with_mqtt']:,}; packet types differ in "
              f"{ag['frames_differ']} frames: {ag['differ_at']}")


if __name__ == "__main__":
    main()

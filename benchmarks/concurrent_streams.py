"""Memory of decoding a capture with very many concurrent TCP connections (issue 11 §9).

A synthetic capture holds STREAMS connections (default 100,000) to a broker on 1883, all open
at once: each a handshake, a CONNECT, a CONNACK and a QoS 1 PUBLISH, none closed before the end
(written by qosinspect.testing.synthcap into ``out/bench/concurrent-N.pcap``, about 0.7 kB per
connection). Measured, each as its own process (peak RSS from ``wait4``):

* ``qosinspect``: ``qosinspect decode --format jsonl CAPTURE > /dev/null``;
* ``tshark``: ``tshark -n -r CAPTURE -Y mqtt -T fields -e mqtt.msgtype`` (the peer, same run).

The decoder tracks at most 25,000 connections at once (``capture/reassembly.py``: the least
recently active tenth is evicted beyond that, and said), so its memory stops growing there;
every MQTT packet is still decoded (the packet count is printed).

    python benchmarks/concurrent_streams.py [--streams N] [--json]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from _capture import argument_parser, log, run_measured

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qosinspect.capture.writer import pcap_header, pcap_record  # noqa: E402
from qosinspect.mqtt import ConnAck, Connect, Publish, encode  # noqa: E402
from qosinspect.testing.synthcap import TcpConversation, render  # noqa: E402


def make(path: Path, streams: int) -> None:
    """The capture: every connection opened, none closed (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(pcap_header(1, nanos=True))
        for i in range(streams):
            conv = TcpConversation((f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                                    40000 + i % 20000), ("10.255.0.1", 1883),
                                   start_ns=1_700_000_000_000_000_000 + i * 1000, step_ns=1)
            conv.send("c2b", encode(Connect(f"c{i}")))
            conv.send("b2c", encode(ConnAck()))
            conv.send("c2b", encode(Publish("t", b"x", 1, packet_id=1)))
            for f in render(conv.segments):
                out.write(pcap_record(f.ts_ns, f.data, f.orig_len, nanos=True))


def main() -> None:
    ap = argument_parser(__doc__)
    ap.add_argument("--streams", type=int, default=100_000)
    args = ap.parse_args()
    path = ROOT / "out" / "bench" / f"concurrent-{args.streams}.pcap"
    if not path.exists():
        log(f"writing {path} ({args.streams} concurrent connections)")
        make(path, args.streams)
    qi = str(ROOT / ".venv" / "bin" / "qosinspect")
    ours_s, ours_mb, rc = run_measured([qi, "decode", "--format", "jsonl", str(path)])
    lines = subprocess.run([qi, "decode", "--format", "jsonl", str(path)], capture_output=True,
                           check=False).stdout.count(b'"type":"')
    result = {"streams": args.streams, "capture_mb": round(path.stat().st_size / 1e6, 1),
              "qosinspect": {"seconds": round(ours_s, 2), "max_rss_mb": round(ours_mb, 1),
                             "exit": rc, "lines": lines}}
    tshark = shutil.which("tshark")
    if tshark:
        t_s, t_mb, t_rc = run_measured([tshark, "-n", "-r", str(path), "-Y", "mqtt", "-T",
                                        "fields", "-e", "mqtt.msgtype"])
        result["tshark"] = {"seconds": round(t_s, 2), "max_rss_mb": round(t_mb, 1),
                            "exit": t_rc}
        result["rss_ratio_qosinspect_over_tshark"] = round(ours_mb / t_mb, 2) if t_mb else None
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()

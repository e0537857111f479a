"""Issue 11's figure table: ``qosinspect report`` on every capture at hand, beside tshark.

Per capture (shipped, shipped field captures, ../shared's suricata-verify and community ones):
brokers, connections (and those refused by CONNACK), connection attempts refused by TCP,
undecoded TCP streams and the TCP evidence counts (Wireshark's ``tcp.analysis`` flags), from
``qosinspect report --format json``; and the same figures read from tshark's dissection with the
same ports given as decode-as (``-d tcp.port==P,mqtt``, ``tls.port`` and the key log for the TLS
captures). Not a benchmark of speed: a table for the issue's note, and a check a reader can
re-run on captures of their own (``--capture FILE --port N``, repeatable).

    python benchmarks/field_table.py [--json] [--capture FILE --port N ...]

tshark's side, so the columns can be compared:
- brokers: distinct server endpoints (address, port given) of the streams that carried MQTT,
  the endpoints of one ``same_broker`` group (the generator's proxy ports) counted once;
- connections: TCP streams that carried MQTT (or, for TLS without keys, TLS on the port);
- refused: CONNACKs with a non-zero return or reason code;
- attempts: streams whose SYN to a given port (or ``attempt_ports``) was answered by RST only;
- undecoded: streams with TCP payload, neither MQTT nor TLS on a given port;
- TCP evidence: frames carrying each ``tcp.analysis`` flag the report counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qosinspect.analysis.tcp_evidence import REPORTED  # noqa: E402
from qosinspect.testing.tools import SHARED_CAPTURES, community_captures  # noqa: E402

CAPTURES = ROOT / "captures"
#: The field captures shipped under captures/field and the port each uses (captures/README.md).
FIELD_PORTS = {"paho-midstream-17501.pcap": [17501], "mosquitto-tls-dsb.pcapng": [51957],
               "tcp-loss-client-side.pcap": [1883], "tcp-loss-broker-side.pcap": [1883],
               "tcp-loss-tls-client-side.pcap": [8883], "tcp-loss-tls-broker-side.pcap": [8883]}


def captures() -> list[dict[str, Any]]:
    """Every capture with the options a user would give: ports, attempt ports, key log."""
    out: list[dict[str, Any]] = []
    for e in json.loads((CAPTURES / "captures.json").read_text()):
        out.append({"path": CAPTURES / e["file"], "ports": e["ports"],
                    "attempt_ports": e.get("attempt_ports", []),
                    "same_broker": e.get("same_broker", []),
                    "keylog": CAPTURES / e["keylog"] if e.get("tls") else None,
                    "websocket": bool(e.get("websocket"))})
    for name, ports in FIELD_PORTS.items():
        keylog = CAPTURES / "field" / "tcp-loss-tls.keylog" if "-tls-" in name else None
        out.append({"path": CAPTURES / "field" / name, "ports": ports, "attempt_ports": [],
                    "same_broker": [], "keylog": keylog, "websocket": False})
    for path in sorted(SHARED_CAPTURES.glob("*.pcap")):
        out.append({"path": path, "ports": [1883], "attempt_ports": [], "same_broker": [],
                    "keylog": None, "websocket": False})
    for path, ports in community_captures():
        out.append({"path": path, "ports": list(ports), "attempt_ports": [], "same_broker": [],
                    "keylog": None, "websocket": False})
    return out


def ours(entry: dict[str, Any]) -> dict[str, Any]:
    cmd = [str(ROOT / ".venv" / "bin" / "qosinspect"), "report", "--format", "json"]
    for port in [*entry["ports"], *entry["attempt_ports"]]:
        cmd += ["--port", str(port)]
    for group in entry["same_broker"]:
        cmd += ["--same-broker", ",".join(group)]
    cmd.append(str(entry["path"]))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    r = json.loads(done.stdout)
    evidence = r.get("tcp_evidence") or {}
    totals = evidence.get("total", {}) if isinstance(evidence, dict) else {}
    return {"brokers": len(r["brokers"]), "connections": r["connections"],
            "refused": r["refused_connections"], "attempts": r["tcp_attempts_refused"],
            "undecoded": r["undecoded_streams"],
            "tcp": {k: int(totals.get(k, 0)) for k in REPORTED}}


def _tshark(path: Path, decode: list[str], display: str, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), *decode, "-Y", display, "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return [line.split("\t") for line in out.splitlines()]


def theirs(entry: dict[str, Any]) -> dict[str, Any]:
    path, ports = entry["path"], entry["ports"]
    decode: list[str] = []
    for port in ports:
        if entry["keylog"] is not None:
            decode += ["-d", f"tls.port=={port},mqtt", "-o",
                       f"tls.keylog_file:{entry['keylog']}"]
        elif entry["websocket"]:
            decode += ["-d", f"tcp.port=={port},http"]
        else:
            decode += ["-d", f"tcp.port=={port},mqtt"]
    rows = _tshark(path, decode, "tcp", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport",
                   "ip.dst", "ipv6.dst", "tcp.dstport", "tcp.len", "tcp.flags.syn",
                   "tcp.flags.ack", "tcp.flags.reset", "frame.protocols")
    given = set(ports) | set(entry["attempt_ports"])
    mqtt_streams: set[str] = set()
    brokers: set[tuple[str, str]] = set()
    payload: set[str] = set()
    syn_to: dict[str, bool] = {}
    answered: set[str] = set()
    reset: set[str] = set()
    for stream, src4, src6, sport, dst4, dst6, dport, tlen, syn, ack, rst, protocols in rows:
        layers = protocols.split(":")
        tls = "tls" in layers and (int(dport) in given or int(sport) in given)
        if "mqtt" in layers or "websocket" in layers or tls:
            mqtt_streams.add(stream)
            if int(dport) in given:
                brokers.add((dst4 or dst6, dport))
            elif int(sport) in given:
                brokers.add((src4 or src6, sport))
        if tlen and int(tlen) > 0:
            payload.add(stream)
        if syn in ("1", "True") and ack not in ("1", "True") and int(dport) in given:
            syn_to[stream] = True
        if syn in ("1", "True") and ack in ("1", "True"):
            answered.add(stream)
        if rst in ("1", "True"):
            reset.add(stream)
    refused = _tshark(path, decode, "mqtt.conack.val != 0 || mqtt.connack.reason_code >= 0x80",
                      "frame.number")
    flags = _tshark(path, [], "tcp.analysis.flags",
                    *(f"tcp.analysis.{k}" for k in REPORTED))
    tcp: Counter[str] = Counter()
    for row in flags:
        for kind, value in zip(REPORTED, row, strict=True):
            if value:
                tcp[kind] += 1
    alias = {member: group[0] for group in entry["same_broker"] for member in group}
    named = {alias.get(f"{host}:{port}", f"{host}:{port}") for host, port in brokers}
    return {"brokers": len(named), "connections": len(mqtt_streams),
            "refused": len(refused),
            "attempts": sum(1 for s in syn_to if s not in answered and s in reset),
            "undecoded": len(payload - mqtt_streams),
            "tcp": {k: tcp[k] for k in REPORTED}}


def _cell(a: Any, b: Any) -> str:
    return f"{a}" if a == b else f"{a} (tshark {b})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--capture", action="append", default=[], type=Path)
    parser.add_argument("--port", action="append", default=[], type=int)
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        sys.exit("tshark is not installed (apt-get install tshark)")
    entries = ([{"path": p, "ports": args.port or [1883], "attempt_ports": [],
                 "same_broker": [], "keylog": None, "websocket": False} for p in args.capture]
               or captures())
    results = []
    for entry in entries:
        results.append({"capture": str(entry["path"].relative_to(ROOT.parent))
                        if entry["path"].is_relative_to(ROOT.parent) else str(entry["path"]),
                        "ours": ours(entry), "tshark": theirs(entry)})
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    short = {"lost_segment": "lost", "duplicate_ack": "dup ACK", "fast_retransmission": "fast rtx",
             "retransmission": "rtx", "spurious_retransmission": "spurious",
             "out_of_order": "OOO", "ack_lost_segment": "ACKed lost"}
    print("| capture | brokers | connections | refused (CONNACK) | attempts (RST) | undecoded | "
          "TCP evidence |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        o, t = r["ours"], r["tshark"]
        if "error" in o:
            print(f"| {Path(r['capture']).name} | error: {o['error']} |||||| ")
            continue
        tcp = ", ".join(f"{short[k]} {_cell(o['tcp'][k], t['tcp'][k])}" for k in REPORTED
                        if o["tcp"][k] or t["tcp"][k]) or "none"
        print(f"| {Path(r['capture']).name} | {_cell(o['brokers'], t['brokers'])} | "
              f"{_cell(o['connections'], t['connections'])} | "
              f"{_cell(o['refused'], t['refused'])} | {_cell(o['attempts'], t['attempts'])} | "
              f"{_cell(o['undecoded'], t['undecoded'])} | {tcp} |")


if __name__ == "__main__":
    main()

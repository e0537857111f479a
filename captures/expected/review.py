"""Review the expected reports against Wireshark: tshark's reading of each capture beside ours.

    .venv/bin/python captures/expected/review.py            # print both, side by side
    .venv/bin/python captures/expected/review.py --write    # (re)write <capture>.report.json

The shipped captures (``../captures.json``) and the community ones in
``../../../shared/captures/community`` (their reports under ``community/``; MQTT on port 1337
in the two ``alivcor`` files, 1883 elsewhere: :data:`qosinspect.testing.tools.COMMUNITY_PORTS`).

How the expected files were made: for every capture in captures.json this prints what tshark
decodes (PUBLISH packets per QoS, DUP flags, packet ids, acknowledgements, CONNACK codes and
session-present flags, TCP resets, ``tcp.analysis`` flags) next to the same figures from
``qosinspect report``. Only
after reading both (and the ladder of anything that differed) was ``--write`` run; the reviewed
differences are explained in README.md beside this file. The test
``tests/analysis/test_expected_reports.py`` keeps the reports equal to the files.

tshark 4.0 does not dissect MQTT inside WebSocket; for that capture the WebSocket payloads that
tshark extracts are read here with a ten-line fixed-header parser (type, flags, packet id).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CAPTURES = HERE.parent
#: The TCP evidence kinds the report counts (qosinspect.analysis.tcp_evidence.REPORTED).
EVIDENCE = ("lost_segment", "duplicate_ack", "fast_retransmission", "retransmission",
            "spurious_retransmission", "out_of_order", "ack_lost_segment")
TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
         7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
         12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}


#: Key logs of the TLS captures: tshark decrypts those with them (qosinspect does not).
KEYLOGS = {e["file"]: e["keylog"] for e in json.loads((CAPTURES / "captures.json").read_text())
           if e.get("tls")}


def _tshark(path: Path, port: int, *args: str) -> list[list[str]]:
    decode = (["-d", f"tls.port=={port},mqtt", "-o",
               f"tls.keylog_file:{CAPTURES / KEYLOGS[path.name]}"] if path.name in KEYLOGS
              else ["-d", f"tcp.port=={port},mqtt"])
    cmd = ["tshark", "-r", str(path), *decode, *args, "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _ws_packets(path: Path, port: int) -> list[dict[str, Any]]:
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"tcp.port=={port},http", "-Y", "websocket.opcode==2",
         "-T", "fields", "-e", "tcp.stream", "-e", "tcp.dstport", "-e", "data.data"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    out = []
    for row in rows:
        stream, dport, hexdata = row.split("\t")
        data = bytes.fromhex(hexdata)
        i = 0
        while i < len(data):
            first = data[i]
            n, shift, j = 0, 0, i + 1
            while True:
                b = data[j]
                n |= (b & 0x7F) << shift
                j += 1
                if not b & 0x80:
                    break
                shift += 7
            body = data[j:j + n]
            t = first >> 4
            pkt: dict[str, Any] = {"stream": int(stream), "c2b": int(dport) == port,
                                   "type": TYPES.get(t, str(t))}
            if t == 3:
                qos = (first >> 1) & 3
                tl = int.from_bytes(body[:2], "big")
                pkt.update(qos=qos, dup=bool(first & 8),
                           id=int.from_bytes(body[2 + tl:4 + tl], "big") if qos else None)
            elif t in (4, 5, 6, 7):
                pkt["id"] = int.from_bytes(body[:2], "big")
            elif t == 2:
                pkt.update(sp=bool(body[0] & 1), code=body[1])
            out.append(pkt)
            i = j + n
    return out


def _mqtt_packets(path: Path, port: int) -> list[dict[str, Any]]:
    rows = _tshark(path, port, "-Y", "mqtt", "-e", "tcp.stream", "-e", "tcp.dstport",
                   "-e", "mqtt.msgtype", "-e", "mqtt.qos", "-e", "mqtt.dupflag", "-e",
                   "mqtt.msgid", "-e", "mqtt.conack.flags.sp", "-e", "mqtt.conack.val",
                   "-e", "mqtt.connack.reason_code")
    out = []
    for stream, dport, types, qos, dup, ids, sp, code3, code5 in rows:
        code = code3 or code5
        qs, ds, ms = iter(qos.split(",")), iter(dup.split(",")), iter(ids.split(","))
        for t in types.split(","):
            t = int(t)
            pkt: dict[str, Any] = {"stream": int(stream), "c2b": int(dport) == port,
                                   "type": TYPES.get(t, str(t))}
            if t == 3:
                q = int(next(qs))
                pkt.update(qos=q, dup=next(ds) in ("1", "True"),
                           id=int(next(ms)) if q else None)
            elif t in (4, 5, 6, 7):
                pkt["id"] = int(next(ms))
            elif t in (8, 9, 10, 11):
                next(ms)
            elif t == 2:
                pkt.update(sp=sp in ("1", "True"), code=int(code))
            out.append(pkt)
    return out


def entries() -> list[dict[str, Any]]:
    """Every capture reviewed: ``file``, ``path``, ``ports``, ``websocket``, ``expected`` (the
    reviewed report's path) and, for the shipped ones, the rest of their captures.json entry."""
    sys.path.insert(0, str(CAPTURES.parent))
    from qosinspect.testing.tools import community_captures

    shipped = [{**e, "path": CAPTURES / e["file"],
                "expected": HERE / e["file"].replace(".pcap", ".report.json")}
               for e in json.loads((CAPTURES / "captures.json").read_text())]
    community = [{"file": path.name, "path": path, "ports": list(ports), "websocket": False,
                  "expected": HERE / "community" / path.name.replace(".pcap", ".report.json")}
                 for path, ports in community_captures()]
    return shipped + community


def tshark_view(entry: dict[str, Any]) -> dict[str, Any]:
    path = entry["path"]
    port = entry["ports"][0]
    pk = _ws_packets(path, port) if entry["websocket"] else _mqtt_packets(path, port)
    pub = [p for p in pk if p["type"] == "PUBLISH"]
    resets = _tshark(path, port, "-Y", "tcp.flags.reset==1", "-e", "tcp.stream")
    refused = _tshark(path, port, "-Y", "mqtt.puback.reason_code >= 0x80 || "
                      "mqtt.pubrec.reason_code >= 0x80", "-e", "frame.number")
    flags = _tshark(path, port, "-Y", "tcp.analysis.flags",
                    *(x for k in EVIDENCE for x in ("-e", f"tcp.analysis.{k}")))
    creds = ([] if entry["websocket"] or entry.get("tls") else
             _tshark(path, port, "-Y", "mqtt.msgtype==1", "-e", "mqtt.username",
                     "-e", "mqtt.passwd"))
    return {
        "CONNECT with user name, password; user names": (
            sum(1 for c in creds if c[0]), sum(1 for c in creds if c[1]),
            sorted({c[0] for c in creds if c[0]})),
        "connections (CONNECT)": sum(1 for p in pk if p["type"] == "CONNECT"),
        "PUBLISH per QoS": dict(sorted(Counter(p["qos"] for p in pub).items())),
        "PUBLISH DUP=1 per QoS": dict(sorted(Counter(p["qos"] for p in pub if p["dup"])
                                             .items())),
        "acks": dict(sorted(Counter(p["type"] for p in pk
                                    if p["type"] in ("PUBACK", "PUBREC", "PUBREL",
                                                     "PUBCOMP")).items())),
        "CONNACK (code, session present)": sorted(Counter((p["code"], p["sp"]) for p in pk
                                                          if p["type"] == "CONNACK").items()),
        "streams with RST": sorted({int(r[0]) for r in resets}),
        "PUBACK/PUBREC >= 0x80": len(refused),
        "TCP evidence (tcp.analysis.*)": {k: sum(1 for f in flags if f[i]) for i, k in
                                          enumerate(EVIDENCE) if any(f[i] for f in flags)},
    }


def our_view(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "connections": report["connections"],
        "per QoS (publishes, completed, incomplete, retrans, DUP, dup delivered)": [
            (r["qos"], r["publishes"], r["completed"], r["incomplete"], r["retransmissions"],
             r["dup_flagged"], r["duplicates_delivered"]) for r in report["per_qos"]],
        "refused": [r["refused"] for r in report["per_qos"]],
        "reconnects": report["reconnects"], "redelivered": report["redelivered"],
        "connection ends": report["connection_ends"], "anomalies": report["anomalies"],
        "clear text": report["clear_text"],
        "TCP evidence": {k: n for k, n in report["tcp_evidence"]["total"].items() if n},
    }


def expected_report(entry: dict[str, Any]) -> dict[str, Any]:
    """The report as compared by the tests: without the path of the capture."""
    sys.path.insert(0, str(CAPTURES.parent))
    from qosinspect.analysis.api import analyze_capture
    from qosinspect.analysis.options import AnalysisOptions
    from qosinspect.testing.tools import shipped_same_broker

    options = AnalysisOptions(same_broker=shipped_same_broker(entry))
    report = analyze_capture(entry["path"], ports=tuple(entry["ports"]),
                             options=options).report()
    report["capture"].pop("source", None)
    return report


def main() -> None:
    write = "--write" in sys.argv
    for entry in entries():
        report = expected_report(entry)
        print(f"== {entry['file']}")
        print("  tshark: " + json.dumps(tshark_view(entry)))
        print("  ours:   " + json.dumps(our_view(report)))
        if write:
            entry["expected"].parent.mkdir(exist_ok=True)
            entry["expected"].write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

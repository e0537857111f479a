"""Codec benchmark: packets/s of the stream decoder on a realistic mix, against scapy's MQTT layer.

The mix is what a QoS study captures: PUBLISH at QoS 0, 1 and 2 with 16-1024 byte payloads on ten
topics, each with its acknowledgements (PUBACK; PUBREC, PUBREL, PUBCOMP), and a PINGREQ now and
then. Our decoder is fed the byte stream in 1460-byte chunks (TCP segments), so packets straddle
chunk boundaries as they do on the wire; scapy is given each packet's bytes separately, which is
easier for it. Both run in this process, one core, best of several rounds.

    python benchmarks/codec.py            # human-readable
    python benchmarks/codec.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qosinspect.mqtt import (
    Packet,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    StreamDecoder,
    encode,
)


def make_mix(n_publish: int, seed: int = 1) -> list[Packet]:
    rng = random.Random(seed)
    packets: list[Packet] = []
    pid = 0
    for i in range(n_publish):
        qos = i % 3
        pid = pid % 65535 + 1
        payload = rng.randbytes(rng.randint(16, 1024))
        packets.append(Publish(f"plant/line{i % 10}/sensor", payload, qos, False, False,
                               pid if qos else None))
        if qos == 1:
            packets.append(PubAck(pid))
        elif qos == 2:
            packets += [PubRec(pid), PubRel(pid), PubComp(pid)]
        if i % 50 == 0:
            packets.append(PingReq())
    return packets


def bench_qosinspect(stream: bytes, version: int, rounds: int) -> tuple[float, int]:
    chunks = [stream[i:i + 1460] for i in range(0, len(stream), 1460)]
    best = float("inf")
    count = 0
    for _ in range(rounds):
        decoder = StreamDecoder(version)
        start = time.perf_counter()
        count = 0
        for chunk in chunks:
            count += len(decoder.feed(chunk))
        best = min(best, time.perf_counter() - start)
    return count / best, count


def bench_scapy(encoded: list[bytes], budget_s: float) -> float | None:
    try:
        from scapy.contrib.mqtt import MQTT
    except ImportError:
        return None
    start = time.perf_counter()
    done = 0
    for raw in encoded:
        MQTT(raw)
        done += 1
        if done % 500 == 0 and time.perf_counter() - start > budget_s:
            break
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishes", type=int, default=60_000,
                        help="PUBLISH packets in the mix (acks come on top)")
    parser.add_argument("--version", type=int, choices=(3, 4, 5), default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scapy-seconds", type=float, default=5.0,
                        help="time budget for the (slow) scapy measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    packets = make_mix(args.publishes)
    encoded = [encode(p, args.version) for p in packets]
    ours, count = bench_qosinspect(b"".join(encoded), args.version, args.rounds)
    if count != len(packets):
        print(f"error: decoded {count} packets, expected {len(packets)}", file=sys.stderr)
        return 1
    scapy = bench_scapy(encoded, args.scapy_seconds)
    ratio = ours / scapy if scapy else None
    figures = {"qosinspect_pps": round(ours), "scapy_pps": round(scapy) if scapy else None,
               "ratio": round(ratio, 1) if ratio else None, "packets": count,
               "mqtt_version": args.version, "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"mix: {count} packets, MQTT level {args.version}")
        print(f"qosinspect StreamDecoder: {ours:,.0f} packets/s")
        if scapy:
            print(f"scapy MQTT layer:         {scapy:,.0f} packets/s")
            print(f"ratio:                    {ratio:.1f}x")
        else:
            print("scapy not installed: no ratio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Codec benchmark: packets/s of the stream decoder on a realistic mix, against scapy's MQTT layer.

The mix is what a QoS study captures: PUBLISH at QoS 0, 1 and 2 with 16-1024 byte payloads on ten
topics, each with its acknowledgements (PUBACK; PUBREC, PUBREL, PUBCOMP), and a PINGREQ now and
then. Our decoder is fed the byte stream in 1460-byte chunks (TCP segments), so packets straddle
chunk boundaries as they do on the wire; scapy is given each packet's bytes separately, which is
easier for it. Both run in this process, on one core.

The machine may be shared: rounds of the two decoders alternate, so that a busy moment slows
both, and the best round of each is compared (``ratio``); the median of the ratios of adjacent
rounds (``ratio_median``) is printed too, as a check on the noise. Before timing, both decoders'
results are checked against the packets the mix was made of.

    python benchmarks/codec.py            # human-readable
    python benchmarks/codec.py --json     # one JSON object
    python benchmarks/codec.py --pure     # the pure-Python decoder even if the C one is built

``implementation`` says which decoder ran: ``c`` (the C loop of qosinspect._speedups, used when
the package was built with a compiler) or ``python`` (--pure, QOSINSPECT_PURE=1, or no build).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qosinspect import _accel
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


def new_decoder(version: int, pure: bool) -> StreamDecoder:
    if pure:
        with _accel.pure():
            return StreamDecoder(version)
    return StreamDecoder(version)


def ours_round(chunks: list[bytes], version: int, pure: bool) -> tuple[float, int]:
    """One pass of the stream decoder over all chunks: (seconds, packets)."""
    decoder = new_decoder(version, pure)
    count = 0
    start = time.perf_counter()
    for chunk in chunks:
        count += len(decoder.feed(chunk))
    return time.perf_counter() - start, count


def scapy_round(mqtt: Any, sample: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in sample:
        mqtt(raw)
    return time.perf_counter() - start


def check(packets: list[Packet], chunks: list[bytes], version: int, mqtt: Any,
          sample: list[bytes], pure: bool) -> None:
    """Both decoders must read the mix right before their speed means anything."""
    decoder = new_decoder(version, pure)
    decoded = [p for chunk in chunks for p in decoder.feed(chunk)]
    if decoded != packets:
        raise SystemExit("error: the stream decoder did not give back the mix")
    if mqtt is None:
        return
    for raw, packet in zip(sample, packets, strict=False):
        layer = mqtt(raw)
        if layer.type != raw[0] >> 4 or (
                isinstance(packet, Publish) and layer.payload.topic.decode() != packet.topic):
            raise SystemExit(f"error: scapy misread {raw[:16].hex()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishes", type=int, default=60_000,
                        help="PUBLISH packets in the mix (acks come on top)")
    parser.add_argument("--version", type=int, choices=(3, 4, 5), default=4)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--chunk", type=int, default=1460, help="bytes per feed (a TCP segment)")
    parser.add_argument("--scapy-packets", type=int, default=2000,
                        help="packets of the mix scapy dissects per round (it is slow)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pure", action="store_true",
                        help="measure the pure-Python decoder even if the C one is built")
    args = parser.parse_args()
    impl = "python" if args.pure else _accel.implementation()

    packets = make_mix(args.publishes)
    encoded = [encode(p, args.version) for p in packets]
    stream = b"".join(encoded)
    chunks = [stream[i:i + args.chunk] for i in range(0, len(stream), args.chunk)]
    sample = encoded[:args.scapy_packets]
    try:
        from scapy.contrib.mqtt import MQTT
    except ImportError:
        MQTT = None
    check(packets, chunks, args.version, MQTT, sample, args.pure)

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        seconds, count = ours_round(chunks, args.version, args.pure)
        ours.append(count / seconds)
        if MQTT is not None:
            theirs.append(len(sample) / scapy_round(MQTT, sample))
    best, best_scapy = max(ours), max(theirs) if theirs else None
    ratio = best / best_scapy if best_scapy else None
    ratio_median = (statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
                    if theirs else None)
    figures = {
        "qosinspect_pps": round(best), "scapy_pps": round(best_scapy) if best_scapy else None,
        "ratio": round(ratio, 1) if ratio else None,
        "ratio_median": round(ratio_median, 1) if ratio_median else None,
        "qosinspect_pps_median": round(statistics.median(ours)),
        "scapy_pps_median": round(statistics.median(theirs)) if theirs else None,
        "packets": len(packets), "bytes": len(stream), "chunk": args.chunk,
        "rounds": args.rounds, "mqtt_version": args.version,
        "python": sys.version.split()[0], "implementation": impl,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"mix: {len(packets)} packets, {len(stream):,} bytes, MQTT level {args.version}, "
              f"fed in {args.chunk}-byte chunks; best (median) of {args.rounds} rounds")
        print(f"qosinspect StreamDecoder: {best:,.0f} packets/s "
              f"({figures['qosinspect_pps_median']:,} median; implementation: {impl})")
        if best_scapy:
            print(f"scapy MQTT layer:         {best_scapy:,.0f} packets/s "
                  f"({figures['scapy_pps_median']:,} median, {len(sample)} packets a round)")
            print(f"ratio:                    {ratio:.1f}x (median of the rounds' ratios "
                  f"{ratio_median:.1f}x)")
        else:
            print("scapy not installed: no ratio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

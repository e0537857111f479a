"""Scripted captures that stress the state the decoder and the analysis keep (issue 11 §9).

Two shapes found by fuzzing made the memory grow with the capture: many QoS 1 packet ids in
flight on one connection (every PUBLISH an open exchange, none acknowledged), and very many TCP
connections open at once (every one a flow, a connection and a session). Both are written
here, once, for the memory tests (``tests/analysis/test_state_caps.py``) and the benchmark
(``benchmarks/concurrent_streams.py``), as pcap files of any size, frame by frame (a capture of
100,000 connections is never held in memory whole).
"""

from __future__ import annotations

from pathlib import Path

from ..capture.writer import pcap_header, pcap_record
from ..mqtt import ConnAck, Connect, Disconnect, PubAck, Publish, encode
from .synthcap import TcpConversation, render

__all__ = ["qos1_flows_and_copies", "write_concurrent_streams", "write_ended_connections",
           "write_inflight_ids", "write_qos1_flows"]

T0 = 1_700_000_000_000_000_000


def write_inflight_ids(path: Path, ids: int, *, segment_bytes: int = 1400) -> None:
    """One connection (CONNECT, CONNACK), then ``ids`` QoS 1 PUBLISH with distinct packet ids
    and payloads and no PUBACK: the client uses ids 1..65535, the broker takes the rest
    (packet ids are per direction [MQTT-2.2.1-4]). The packets are packed into segments of
    about ``segment_bytes``, so the capture is about 10 bytes an id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conv = TcpConversation(("10.0.0.1", 50000), ("10.0.0.2", 1883), start_ns=T0, step_ns=1000)
    conv.send("c2b", encode(Connect("inflight", clean_start=False)))
    conv.send("b2c", encode(ConnAck()))
    for d, first, n in (("c2b", 0, min(ids, 65535)), ("b2c", 65535, max(0, ids - 65535))):
        chunk = bytearray()
        for i in range(first, first + n):
            chunk += encode(Publish("t", i.to_bytes(3, "big"), 1, packet_id=i - first + 1))
            if len(chunk) >= segment_bytes:
                conv.send(d, bytes(chunk), ack=False)
                chunk.clear()
        if chunk:
            conv.send(d, bytes(chunk), ack=False)
    with path.open("wb") as out:
        out.write(pcap_header(1, nanos=True))
        for f in render(conv.segments):
            out.write(pcap_record(f.ts_ns, f.data, f.orig_len, nanos=True))


def write_qos1_flows(path: Path, exchanges: int, *, batch: int = 20) -> None:
    """One connection (CONNECT, CONNACK, FIN at the end) carrying ``exchanges`` complete QoS 1
    exchanges, ``batch`` at a time (a segment of PUBLISH, then one of their PUBACK), packet ids
    cycling through 1..65535: a long run of finished exchanges in few frames (about 14 bytes
    of capture an exchange), for the memory of ``report`` (issue 14)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conv = TcpConversation(("10.0.0.1", 50000), ("10.0.0.2", 1883), start_ns=T0, step_ns=1000)
    conv.send("c2b", encode(Connect("flows", clean_start=False)))
    conv.send("b2c", encode(ConnAck()))
    for first in range(0, exchanges, batch):
        ids = [i % 65535 + 1 for i in range(first, min(first + batch, exchanges))]
        conv.send("c2b", b"".join(encode(Publish("t", i.to_bytes(3, "big"), 1, packet_id=i))
                                  for i in ids), ack=False)
        conv.send("b2c", b"".join(encode(PubAck(i)) for i in ids), ack=False)
    conv.close()
    with path.open("wb") as out:
        out.write(pcap_header(1, nanos=True))
        for f in render(conv.segments):
            out.write(pcap_record(f.ts_ns, f.data, f.orig_len, nanos=True))


def qos1_flows_and_copies(folder: Path, exchanges: int, times: int = 5) -> tuple[Path, Path]:
    """``folder/flows.pcap`` (:func:`write_qos1_flows`) and the same played ``times`` times,
    each copy shifted after the previous one (``flows-x<times>.pcap``): the pair the bounded
    memory tests of ``report`` and ``batch`` compare (issue 14)."""
    from .concat import concatenate_shifted

    one = folder / "flows.pcap"
    write_qos1_flows(one, exchanges)
    return one, concatenate_shifted(one, folder / f"flows-x{times}.pcap", times)


def write_concurrent_streams(path: Path, streams: int) -> None:
    """``streams`` connections to a broker on 1883, all open at once: each a handshake, a
    CONNECT, a CONNACK and a QoS 1 PUBLISH, none closed before the end (about 0.7 kB per
    connection)."""
    _write_clients(path, streams, gap_ns=1000, step_ns=1, ended=False)


def write_ended_connections(path: Path, conns: int, *, gap_ns: int = 100_000_000) -> None:
    """``conns`` connections one after the other, ``gap_ns`` apart, each its own client: a
    handshake, CONNECT, CONNACK, a QoS 1 PUBLISH and its PUBACK, DISCONNECT and FIN (about
    1.2 kB of capture per connection). The decoder follows one at a time (and keeps a closed
    one's halves for its 120 s tombstone: 1,200 of them at 100 ms apart, whatever the count),
    so what grows with ``conns`` is what the analysis keeps of each ended connection and its
    session."""
    _write_clients(path, conns, gap_ns=gap_ns, step_ns=10, ended=True)


def _write_clients(path: Path, n: int, *, gap_ns: int, step_ns: int, ended: bool) -> None:
    """``n`` clients ``c<i>``, each on a connection of its own starting ``gap_ns`` after the
    one before: CONNECT, CONNACK, a QoS 1 PUBLISH; when ``ended``, its PUBACK, DISCONNECT and
    FIN too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(pcap_header(1, nanos=True))
        for i in range(n):
            conv = TcpConversation((f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                                    40000 + i % 20000), ("10.255.0.1", 1883),
                                   start_ns=T0 + i * gap_ns, step_ns=step_ns)
            conv.send("c2b", encode(Connect(f"c{i}")))
            conv.send("b2c", encode(ConnAck()))
            conv.send("c2b", encode(Publish("t", b"x", 1, packet_id=1)))
            if ended:
                conv.send("b2c", encode(PubAck(1)))
                conv.send("c2b", encode(Disconnect()))
                conv.close("fin", "c2b")
            for f in render(conv.segments):
                out.write(pcap_record(f.ts_ns, f.data, f.orig_len, nanos=True))

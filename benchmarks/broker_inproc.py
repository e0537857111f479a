"""The broker's own cost per message, without sockets: CPU microseconds per 1->1 message at
QoS 0, 1 and 2, measured in one process on the server's connection objects.

``broker.py`` measures throughput over TCP against mosquitto; on a shared 2-core machine that
figure moves with everybody else's load, and it includes the load generator and the kernel.
This one feeds the bytes of a publisher and a subscriber straight into the server's protocol
objects (``_Connection.data_received``: framing, engine, encoding, the same code as a live
broker) with a transport that only keeps what is written, and times those calls alone with the
process CPU clock. The two fake clients answer what the broker sends (PUBACK; PUBREC, PUBREL,
PUBCOMP) outside the timed part. So it compares two revisions of the broker to a few percent
(run it with ``PYTHONPATH=<tree> python -P``), and ``--profile`` says where the time goes.

    python benchmarks/broker_inproc.py                   # QoS 0, 1, 2: us per message
    PYTHONPATH=../wt-old python -P benchmarks/broker_inproc.py --json
    python benchmarks/broker_inproc.py --qos 1 --profile  # cProfile of the timed calls
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from typing import Any

from qosinspect.broker.server import BrokerServer, Listener, ServerConfig, _Connection
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.framing import StreamDecoder
from qosinspect.mqtt.packets import (
    Connect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
)

TOPIC = "bench/inproc/topic"


class _Transport:
    """What the server's connection object needs of a transport; keeps what is written."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _Client:
    """One fake client: its connection object, its transport and a decoder of what it gets."""

    def __init__(self, server: BrokerServer, port: int) -> None:
        self.proto = _Connection(server, server.config.listeners[0])
        self.transport = _Transport(port)
        self.proto.connection_made(self.transport)  # type: ignore[arg-type]
        self.decoder = StreamDecoder(4)

    def received(self) -> list[Any]:
        return list(self.decoder.feed(self.transport.take()))


def run(qos: int, messages: int, batch: int, profile: cProfile.Profile | None,
        segment: int = 0) -> float:
    """CPU seconds the broker spent on ``messages`` messages from publisher to subscriber;
    ``segment``: the bytes of one client are read in pieces of at most that size (a packet
    may be split between two reads, as over TCP), 0: whole."""
    server = BrokerServer(ServerConfig([Listener("127.0.0.1", 0)]))
    pub, sub = _Client(server, 50001), _Client(server, 50002)
    pub.proto.data_received(encode(Connect("pub", keep_alive=0), 4))
    sub.proto.data_received(encode(Connect("sub", keep_alive=0), 4) +
                            encode(Subscribe(1, (Subscription(TOPIC, qos),)), 4))
    pub.received()
    sub.received()
    payload = bytes(64)
    spent = 0.0
    clock = time.process_time
    sent = 0
    pid = 0
    while sent < messages:
        chunk = []
        for _ in range(min(batch, messages - sent)):
            pid = pid % 65535 + 1
            chunk.append(encode(Publish(TOPIC, payload, qos, packet_id=pid if qos else None), 4))
        sent += len(chunk)
        feeds: list[tuple[_Client, bytes]] = [(pub, b"".join(chunk))]
        while feeds:
            client, data = feeds.pop(0)
            if profile is not None:
                profile.enable()
            step = segment or len(data)
            t0 = clock()
            for i in range(0, len(data), step):
                client.proto.data_received(data[i:i + step])
            spent += clock() - t0
            if profile is not None:
                profile.disable()
            for other in (pub, sub):
                answers = b"".join(encode(a, 4) for a in _answers(other.received()))
                if answers:
                    feeds.append((other, answers))
    view = getattr(server.engine, "qos_view", None)       # what a $SYS publication reads
    if view is not None:
        t0 = clock()
        for q in (1, 2):
            view.quantile_ms(q, 0.5)
        spent += clock() - t0
    return spent


def _answers(packets: list[Any]) -> list[Any]:
    """What a well-behaved client answers to what it received."""
    out: list[Any] = []
    for p in packets:
        if isinstance(p, Publish) and p.qos == 1:
            out.append(PubAck(p.packet_id or 0))
        elif isinstance(p, Publish) and p.qos == 2:
            out.append(PubRec(p.packet_id or 0))
        elif isinstance(p, PubRec):
            out.append(PubRel(p.packet_id))
        elif isinstance(p, PubRel):
            out.append(PubComp(p.packet_id))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qos", type=int, choices=(0, 1, 2), action="append",
                    help="QoS to measure (repeatable; default 0, 1 and 2)")
    ap.add_argument("--messages", type=int, default=100_000, help="per QoS (default 100000)")
    ap.add_argument("--batch", type=int, default=10,
                    help="PUBLISH packets per read of the publisher's socket (default 10)")
    ap.add_argument("--segment", type=int, default=0,
                    help="read each client's bytes in pieces of at most this size (0: whole)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per QoS; the best is kept")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the timed calls")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    result: dict[str, Any] = {}
    for qos in a.qos or [0, 1, 2]:
        prof = cProfile.Profile() if a.profile else None
        runs = [run(qos, a.messages, a.batch, prof, a.segment)
                for _ in range(1 if prof else a.repeat)]
        us = [round(r * 1e6 / a.messages, 3) for r in runs]
        result[f"qos{qos}"] = {"us_per_msg": min(us), "runs": us}
        if not a.json:
            print(f"QoS {qos}: {min(us):7.2f} us CPU per message (runs {us})", flush=True)
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if a.json:
        print(json.dumps({"messages": a.messages, "batch": a.batch, "segment": a.segment,
                          "results": result}))


if __name__ == "__main__":
    main()

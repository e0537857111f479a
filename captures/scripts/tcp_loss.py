#!/usr/bin/env python3
"""MQTT over TCP with real segment loss, held ACKs and retransmissions, captured on both sides.

Usage (root):

    unshare -n .venv/bin/python captures/scripts/tcp_loss.py OUTDIR [MESSAGES] [--tls]

Why this way: the kernel here has no ``sch_netem``, no ``tc`` actions and no iptables, so loss
is made by a user-space bridge. In the private namespace this script runs in, two veth pairs
join three namespaces: the client's (10.9.0.1, veth ``c0``), this one (the bridge: ``c1`` and
``s1``, no addresses) and the broker's (10.9.0.2, veth ``s0``). The bridge copies Ethernet
frames between ``c1`` and ``s1`` with packet sockets, and on the way:

* drops every 25th client-to-broker TCP segment that carries data (the client's TCP stack
  retransmits: fast retransmissions after duplicate ACKs, or timeouts);
* holds every 15th broker-to-client pure ACK for 400 ms (longer than the minimum RTO of
  200 ms: the client retransmits data the broker already has, a spurious retransmission).

tcpdump (``-B 32768``) records ``c1`` (``OUTDIR/tcp-loss-client-side.pcap``: before the bridge,
every original and its retransmission) and ``s1`` (``OUTDIR/tcp-loss-broker-side.pcap``: after
the bridge, the lost segments never appear: "previous segment not captured", then
out-of-order fills). mosquitto listens on 10.9.0.2:1883 in the broker's namespace; one paho-mqtt
client in the client's namespace subscribes to its topic and publishes MESSAGES (default 300;
``captures/field`` was made with 150)
QoS 1 messages of 300 bytes, in bursts of 20 (50 ms apart), so that several segments are in
flight when one is lost: duplicate ACKs and fast retransmissions. Segmentation offload is off
on the veth ends (``gso_max_segs 1``) so every frame fits the MTU. Every process started here is
stopped by pid. The TCP checksum is computed by the bridge (veth leaves it to the "hardware").

``--tls``: the same over TLS (``OUTDIR/tcp-loss-tls-{client,broker}-side.pcap`` and the
session secrets in ``OUTDIR/tcp-loss-tls.keylog``), with two connections through the bridge:
mosquitto's TLS listener on 10.9.0.2:8883 (a self-signed certificate made with openssl), a
``watcher`` client that subscribes, and the ``lossy`` client that publishes. Only segments of
more than 200 bytes to port 8883 are dropped (the PUBLISH records; the watcher sends only
PUBACKs): the loss, the retransmissions and the duplicate ACKs are all on the lossy client's
connection, none on the watcher's, which is what a report must show.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from qosinspect.testing.tools import stop_process

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
CLIENT, BROKER = "10.9.0.1", "10.9.0.2"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def in_ns(pid: int, *cmd: str) -> list[str]:
    return ["nsenter", "-t", str(pid), "-n", *cmd]


class Bridge(threading.Thread):
    """Copies frames between two interfaces, dropping and holding some (see the docstring)."""

    def __init__(self, left: str, right: str, port: int = 1883, min_len: int = 1) -> None:
        super().__init__(daemon=True)
        #: Client-to-broker data segments to this port, of at least min_len bytes, are dropped.
        self.port, self.min_len = port, min_len
        self.socks = {}
        for name in (left, right):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((name, 0))
            self.socks[name] = s
        self.left, self.right = left, right
        self.stop = threading.Event()
        self.data_c2b = 0
        self.acks_b2c = 0
        self.dropped = 0
        self.held: list[tuple[float, bytes]] = []

    @staticmethod
    def _tcp(frame: bytes) -> tuple[int, int, int] | None:
        """(payload length, flags, destination port) of an IPv4 TCP frame."""
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            return None
        ihl = (frame[14] & 0x0F) * 4
        total = int.from_bytes(frame[16:18], "big")
        tcp = 14 + ihl
        doff = (frame[tcp + 12] >> 4) * 4
        return total - ihl - doff, frame[tcp + 13], int.from_bytes(frame[tcp + 2:tcp + 4], "big")

    @staticmethod
    def _fixed(frame: bytes) -> bytes:
        """The frame with its TCP checksum computed: a veth end leaves it to the "hardware"
        (checksum offload), and nothing computes it for a frame copied by a packet socket."""
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            return frame
        ihl = (frame[14] & 0x0F) * 4
        total = int.from_bytes(frame[16:18], "big")
        seg = bytearray(frame[14 + ihl:14 + total])
        seg[16:18] = b"\0\0"
        pseudo = frame[26:34] + bytes([0, 6]) + len(seg).to_bytes(2, "big")
        data = pseudo + bytes(seg) + (b"\0" if len(seg) % 2 else b"")
        s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        seg[16:18] = (~s & 0xFFFF).to_bytes(2, "big")
        return frame[:14 + ihl] + bytes(seg) + frame[14 + total:]

    def run(self) -> None:
        left, right = self.socks[self.left], self.socks[self.right]
        while not self.stop.is_set():
            now = time.monotonic()
            while self.held and self.held[0][0] <= now:
                left.send(self.held.pop(0)[1])
            ready, _, _ = select.select([left, right], [], [], 0.01)
            for s in ready:
                frame, addr = s.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue
                frame = self._fixed(frame)
                tcp = self._tcp(frame)
                if s is left:
                    if tcp is not None and tcp[0] >= self.min_len and tcp[2] == self.port:
                        self.data_c2b += 1
                        if self.data_c2b % 25 == 0:
                            self.dropped += 1
                            continue
                    right.send(frame)
                else:
                    if tcp is not None and tcp[0] == 0 and tcp[1] == 0x10:
                        self.acks_b2c += 1
                        if self.acks_b2c % 15 == 0:
                            self.held.append((time.monotonic() + 0.4, frame))
                            continue
                    left.send(frame)


CLIENT_CODE = r"""
import ssl, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
n = int(sys.argv[1]); cafile, keylog = sys.argv[2:4] if len(sys.argv) > 3 else (None, None)
got = []; done = threading.Event()
def on_message(c, u, m):
    got.append(m.payload)
    if len(got) >= n: done.set()
def client(client_id):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False  # the certificate names 10.9.0.2 as an IP SAN
        ctx.keylog_filename = keylog
        c.tls_set_context(ctx)
    c.connect("10.9.0.2", 8883 if cafile else 1883, keepalive=60)
    c.loop_start()
    return c
c = client("lossy")
w = client("watcher") if cafile else c  # over TLS, another connection receives
w.on_message = on_message
w.subscribe("loss/t", qos=1)
time.sleep(0.5)
for i in range(n):
    c.publish("loss/t", (b"%05d" % i) * 60, qos=1)
    if i % 20 == 19:
        time.sleep(0.05)
ok = done.wait(60)
time.sleep(1.0)
for x in {c, w}:
    x.disconnect(); x.loop_stop()
sys.exit(0 if ok else 1)
"""


def main(out: Path, messages: int, tls: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    holders = [subprocess.Popen(["unshare", "-n", "sleep", "600"]) for _ in range(2)]
    procs: list[subprocess.Popen[bytes]] = []
    bridge: Bridge | None = None
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"qosinspect-loss.{os.getpid()}"
    try:
        time.sleep(0.3)
        pc, pb = holders[0].pid, holders[1].pid
        sh("ip", "link", "set", "lo", "up")
        for here, there, pid, addr in (("c1", "c0", pc, CLIENT), ("s1", "s0", pb, BROKER)):
            sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
            sh("ip", "link", "set", "dev", here, "gso_max_segs", "1")
            sh("ip", "link", "set", "dev", there, "gso_max_segs", "1")
            sh("ip", "link", "set", there, "netns", str(pid))
            sh("ip", "link", "set", here, "up")
            for cmd in (["ip", "addr", "add", f"{addr}/24", "dev", there],
                        ["ip", "link", "set", there, "up"], ["ip", "link", "set", "lo", "up"]):
                sh(*in_ns(pid, *cmd))
        bridge = Bridge("c1", "s1", 8883, 200) if tls else Bridge("c1", "s1")
        bridge.start()
        work.mkdir(exist_ok=True)
        conf = work / "mosquitto.conf"
        listener = f"listener 1883 {BROKER}\n"
        extra: list[str] = []
        prefix = "tcp-loss-tls" if tls else "tcp-loss"
        if tls:
            sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
               "-subj", f"/CN={BROKER}", "-addext", f"subjectAltName=IP:{BROKER}", "-keyout",
               str(work / "key.pem"), "-out", str(work / "cert.pem"))
            listener = (f"listener 8883 {BROKER}\ncertfile {work / 'cert.pem'}\n"
                        f"keyfile {work / 'key.pem'}\n")
            extra = [str(work / "cert.pem"), str(out / f"{prefix}.keylog")]
        conf.write_text(f"per_listener_settings false\nallow_anonymous true\n{listener}"
                        "persistence false\nuser root\n")
        procs.append(subprocess.Popen(in_ns(pb, shutil.which("mosquitto") or "mosquitto",
                                            "-c", str(conf)),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        tcpdump = shutil.which("tcpdump") or "/usr/sbin/tcpdump"
        for iface, name in (("c1", "client-side"), ("s1", "broker-side")):
            procs.append(subprocess.Popen([tcpdump, "-i", iface, "-U", "--immediate-mode", "-B",
                                           "32768", "-w", str(out / f"{prefix}-{name}.pcap"),
                                           "tcp"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        time.sleep(1.5)
        client = subprocess.run(in_ns(pc, sys.executable, "-c", CLIENT_CODE, str(messages),
                                      *extra), timeout=120, check=False)
        time.sleep(0.5)
        print(f"dropped {bridge.dropped} data segments of {bridge.data_c2b}, held "
              f"{bridge.acks_b2c // 15} ACKs", file=sys.stderr)
        return client.returncode
    finally:
        for p in reversed(procs):
            stop_process(p, signal.SIGINT)
        if bridge is not None:
            bridge.stop.set()
            bridge.join(5)
        for h in holders:
            h.kill()
            h.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--tls"]
    sys.exit(main(Path(args[0]), int(args[1]) if len(args) > 1 else 300, "--tls" in sys.argv))

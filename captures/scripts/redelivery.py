#!/usr/bin/env python3
"""Raw-socket MQTT peers that make mosquitto redeliver after a session resumption.

Used by record.sh to make captures/mosquitto-redelivery.pcap. It talks to a real
mosquitto broker on 127.0.0.1:PORT and, for MQTT 3.1.1 (level 4) and MQTT 5 (level 5):

1. "redeliver-vN" connects with clean session / clean start = 0 (v5: session expiry 300 s)
   and subscribes to demo/redeliver/vN/# at QoS 2.
2. "redeliver-pub-vN" publishes m1 (QoS 1), m2 (QoS 1), m3 (QoS 2), m4 (QoS 2) and completes
   its own handshakes normally.
3. The subscriber acknowledges m1 (PUBACK), sends nothing for m2, sends PUBREC for m3 and
   waits for the broker's PUBREL but never sends PUBCOMP, sends nothing for m4, then
   aborts the TCP connection (SO_LINGER 0 -> RST, no DISCONNECT).
4. It reconnects with the same client id and clean = 0: CONNACK has session present = 1 and
   mosquitto resends m2 as PUBLISH DUP=1, PUBREL for m3, m4 as PUBLISH DUP=1. The
   subscriber now completes every handshake.
5. "dup-pub-vN" sends a QoS 1 PUBLISH with packet id 7 twice (the second with DUP=1,
   as a client would after a lost PUBACK) and a QoS 2 PUBLISH with packet id 8 twice
   (second DUP=1) before its PUBREL. The broker PUBACKs both QoS 1 copies and forwards
   both (QoS 1 = at least once), and PUBRECs both QoS 2 copies but forwards only one
   (QoS 2 = exactly once).
6. The subscriber acknowledges what it gets and disconnects normally.

Usage: redelivery.py PORT   (host is always 127.0.0.1). Exits non-zero if the broker does not
behave as described above. Standard library only; this is deliberately not qosinspect code.
"""
from __future__ import annotations

import socket
import struct
import sys
import time

HOST = "127.0.0.1"
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, DISCONNECT = 8, 9, 14


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


class Peer:
    def __init__(self, port: int, client_id: str, version: int, clean: bool) -> None:
        self.version = version
        self.client_id = client_id
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        flags = 0x02 if clean else 0x00
        props = b""
        if version == 5:
            props = b"\x11" + struct.pack("!I", 300)  # session expiry interval 300 s
            props = varint(len(props)) + props
        body = utf8("MQTT") + bytes([version, flags]) + struct.pack("!H", 60) + props + utf8(client_id)
        self.send(packet(CONNECT << 4, body))
        ptype, _, body = self.read()
        assert ptype == CONNACK, ptype
        self.session_present = body[0] & 1
        assert body[1] == 0, f"CONNACK return code {body[1]}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 5.0):
        """Return (type, flags, body) of the next MQTT packet, or None on timeout."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        if len(self.buf) >= i + length:
                            first = self.buf[0]
                            body = self.buf[i:i + length]
                            self.buf = self.buf[i + length:]
                            return first >> 4, first & 0x0F, body
                        break
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.buf += chunk

    def ack(self, ptype: int, pid: int) -> None:
        first = (ptype << 4) | (0x02 if ptype == PUBREL else 0)
        self.send(packet(first, struct.pack("!H", pid)))  # v5: no reason code = Success

    def subscribe(self, pid: int, topic: str, qos: int) -> None:
        props = b"\x00" if self.version == 5 else b""
        self.send(packet(0x82, struct.pack("!H", pid) + props + utf8(topic) + bytes([qos])))
        ptype, _, body = self.read()
        assert ptype == SUBACK, ptype

    def publish(self, topic: str, payload: bytes, qos: int, pid: int, dup: bool = False) -> None:
        first = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1)
        body = utf8(topic) + (struct.pack("!H", pid) if qos else b"")
        if self.version == 5:
            body += b"\x00"
        self.send(packet(first, body + payload))

    def parse_publish(self, flags: int, body: bytes):
        qos, dup = (flags >> 1) & 3, bool(flags & 0x08)
        tlen = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack("!H", body[pos:pos + 2])[0]
            pos += 2
        if self.version == 5:
            mult, plen = 1, 0
            while True:
                b = body[pos]
                pos += 1
                plen += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            pos += plen
        return topic, body[pos:], qos, pid, dup

    def disconnect(self) -> None:
        self.send(b"\xe0\x00")
        time.sleep(0.1)
        self.sock.close()

    def abort(self) -> None:
        """Close with RST and without DISCONNECT, like a client that crashed."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def publisher_flow(pub: Peer, msgs) -> None:
    """Publish and complete the publisher-side handshakes normally."""
    for i, (topic, payload, qos) in enumerate(msgs, start=1):
        pub.publish(topic, payload, qos, i)
        if qos == 1:
            assert pub.read()[0] == PUBACK
        elif qos == 2:
            assert pub.read()[0] == PUBREC
            pub.ack(PUBREL, i)
            assert pub.read()[0] == PUBCOMP


def run(port: int, version: int) -> None:
    base = f"demo/redeliver/v{version}"
    sub = Peer(port, f"redeliver-v{version}", version, clean=False)
    sub.subscribe(1, base + "/#", 2)

    pub = Peer(port, f"redeliver-pub-v{version}", version, clean=True)
    publisher_flow(pub, [(base + "/m1", b"m1 qos1 acked", 1), (base + "/m2", b"m2 qos1 not acked", 1),
                         (base + "/m3", b"m3 qos2 pubrec only", 2), (base + "/m4", b"m4 qos2 not acked", 2)])
    pub.disconnect()

    # Subscriber: ack m1, ignore m2, PUBREC m3 (and take its PUBREL, no PUBCOMP), ignore m4.
    seen, got_pubrel = {}, False
    while len(seen) < 4 or not got_pubrel:
        r = sub.read()
        assert r is not None, f"timeout; seen {sorted(seen)}"
        ptype, flags, body = r
        if ptype == PUBLISH:
            topic, payload, qos, pid, dup = sub.parse_publish(flags, body)
            name = topic.rsplit("/", 1)[1]
            seen[name] = pid
            if name == "m1":
                sub.ack(PUBACK, pid)
            elif name == "m3":
                sub.ack(PUBREC, pid)
        elif ptype == PUBREL:
            got_pubrel = True
    time.sleep(0.2)
    sub.abort()
    time.sleep(0.5)

    # Resume the session: expect DUP=1 PUBLISH for m2 and m4, PUBREL for m3.
    sub = Peer(port, f"redeliver-v{version}", version, clean=False)
    assert sub.session_present == 1, "expected session present = 1"
    redelivered, pubrel_again, done = set(), False, set()
    deadline = time.time() + 5
    while (len(redelivered) < 2 or not pubrel_again or len(done) < 3) and time.time() < deadline:
        r = sub.read(1.0)
        if r is None:
            continue
        ptype, flags, body = r
        if ptype == PUBLISH:
            topic, payload, qos, pid, dup = sub.parse_publish(flags, body)
            assert dup, f"redelivered {topic} without DUP"
            redelivered.add(topic.rsplit("/", 1)[1])
            if qos == 1:
                sub.ack(PUBACK, pid)
                done.add(pid)
            else:
                sub.ack(PUBREC, pid)
        elif ptype == PUBREL:
            pid = struct.unpack("!H", body[:2])[0]
            if pid == seen["m3"]:
                pubrel_again = True
            sub.ack(PUBCOMP, pid)
            done.add(pid)
    assert redelivered == {"m2", "m4"} and pubrel_again, (redelivered, pubrel_again)

    # A publisher that retransmits with the same packet id and DUP=1.
    dup = Peer(port, f"dup-pub-v{version}", version, clean=True)
    dup.publish(base + "/dup-q1", b"same packet id twice, qos1", 1, 7)
    dup.publish(base + "/dup-q1", b"same packet id twice, qos1", 1, 7, dup=True)
    assert dup.read()[0] == PUBACK and dup.read()[0] == PUBACK
    dup.publish(base + "/dup-q2", b"same packet id twice, qos2", 2, 8)
    dup.publish(base + "/dup-q2", b"same packet id twice, qos2", 2, 8, dup=True)
    assert dup.read()[0] == PUBREC and dup.read()[0] == PUBREC
    dup.ack(PUBREL, 8)
    assert dup.read()[0] == PUBCOMP
    dup.disconnect()

    counts: dict[str, int] = {}
    while True:
        r = sub.read(1.0)
        if r is None:
            break
        ptype, flags, body = r
        if ptype == PUBLISH:
            topic, payload, qos, pid, _ = sub.parse_publish(flags, body)
            name = topic.rsplit("/", 1)[1]
            counts[name] = counts.get(name, 0) + 1
            sub.ack(PUBACK if qos == 1 else PUBREC, pid)
        elif ptype == PUBREL:
            sub.ack(PUBCOMP, struct.unpack("!H", body[:2])[0])
    assert counts == {"dup-q1": 2, "dup-q2": 1}, counts
    sub.disconnect()
    print(f"v{version}: redelivered {sorted(redelivered)} with DUP=1, PUBREL resent; dup publisher -> {counts}")


if __name__ == "__main__":
    port = int(sys.argv[1])
    for v in (4, 5):
        run(port, v)

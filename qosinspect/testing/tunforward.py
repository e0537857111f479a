"""A user-space link between two TUN devices that loses chosen TCP segments (a test fixture's
forwarder: :class:`~qosinspect.testing.tunlink.TunLink` starts it).

Why: a real retransmission needs a segment lost *after* the sender's kernel sent it, and this
build machine's kernel has no netem, tc actions, iptables or nftables. A TUN device hands the
kernel's IP packets to a program, so one program holding a TUN device in the host namespace and
one in a test namespace is the wire between them: it copies every IP packet across, and drops
the chosen ones. The sender's kernel then retransmits on its own (RTO, tail loss probe or
duplicate ACKs): real TCP, captured on the host device with both copies of the segment.

Run as ``python -m qosinspect.testing.tunforward --netns NS --host-if A --ns-if B
--drop-every N --drop-max M``: it creates device ``A`` in its own namespace and ``B`` in ``NS``
(both vanish when it exits), prints ``ready``, then one JSON line per dropped segment. The
candidates are new TCP data segments from the host side whose payload begins with an MQTT
PUBLISH (first byte 0x3N): every ``drop-every``-th of them after the first ``drop-after``, at
most ``drop-max``; a retransmission (a sequence number already seen) is never dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time
from pathlib import Path

from ..traffic.netns import _setns

__all__ = ["Dropper", "main", "open_tun"]

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_M32 = 0xFFFFFFFF


def open_tun(name: str) -> int:
    """A file descriptor of TUN device ``name`` (made in this thread's namespace, gone when
    the descriptor closes), raw IP packets without a header."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


class Dropper:
    """Which host-side packets to lose (see the module docstring)."""

    def __init__(self, every: int, most: int, after: int = 0) -> None:
        self.every = every
        self.most = most
        self.after = after
        self.publishes = 0
        self.dropped: list[dict[str, int]] = []
        #: (source port, destination port) -> the sequence number after the data seen.
        self.next_seq: dict[tuple[int, int], int] = {}

    def drop(self, pkt: bytes) -> dict[str, int] | None:
        """The record of ``pkt`` when it is to be lost, else None."""
        if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[9] != 6:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        total = min(len(pkt), struct.unpack_from("!H", pkt, 2)[0])
        if total < ihl + 20:
            return None
        sport, dport, seq = struct.unpack_from("!HHI", pkt, ihl)
        doff = (pkt[ihl + 12] >> 4) * 4
        payload = pkt[ihl + doff:total]
        if not payload:
            return None
        flow = (sport, dport)
        expected = self.next_seq.get(flow)
        if expected is not None and (seq - expected) & _M32 >= 0x80000000:
            return None    # before what was seen: a retransmission
        self.next_seq[flow] = (seq + len(payload)) & _M32
        if payload[0] >> 4 != 3 or not self.every:
            return None
        self.publishes += 1
        k = self.publishes - self.after
        if k <= 0 or k % self.every or len(self.dropped) >= self.most:
            return None
        rec = {"ts_ns": time.time_ns(), "sport": sport, "dport": dport, "seq": seq,
               "length": len(payload)}
        self.dropped.append(rec)
        return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tunforward", description=__doc__.split("\n")[0])
    ap.add_argument("--netns", required=True)
    ap.add_argument("--host-if", required=True)
    ap.add_argument("--ns-if", required=True)
    ap.add_argument("--drop-every", type=int, default=0)
    ap.add_argument("--drop-max", type=int, default=0)
    ap.add_argument("--drop-after", type=int, default=0)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host = open_tun(args.host_if)
    target = os.open(str(Path("/var/run/netns") / args.netns), os.O_RDONLY)
    try:
        _setns(target)
    finally:
        os.close(target)
    inner = open_tun(args.ns_if)
    dropper = Dropper(args.drop_every, args.drop_max, args.drop_after)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([host, inner], [], [], 1.0)
        for fd in ready:
            pkt = os.read(fd, 65536)
            if fd == host:
                rec = dropper.drop(pkt)
                if rec is not None:
                    print(json.dumps(rec), flush=True)
                    continue
                _write(inner, pkt)
            else:
                _write(host, pkt)


def _write(fd: int, pkt: bytes) -> None:
    """Hand ``pkt`` to a device; one that is not up yet (EIO) loses it, as a wire would."""
    with contextlib.suppress(OSError):
        os.write(fd, pkt)


if __name__ == "__main__":
    sys.exit(main())

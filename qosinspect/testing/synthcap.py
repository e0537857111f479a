"""A synthetic capture builder: scripted TCP conversations written as pcap or pcapng bytes.

Why: real captures cannot be made to order (a retransmission here, a sequence number wrapping
there, a snap length cutting a segment in two), and tests need to know exactly which bytes were
sent, duplicated or lost. Pure Python and ``struct``: no scapy needed (tests may use scapy to
cross-check that these frames parse there too).

Usage::

    conv = TcpConversation(("10.0.0.1", 50000), ("10.0.0.2", 1883), isn_client=2**32 - 10)
    conv.send("c2b", connect_bytes, segment_size=5)
    conv.send("b2c", connack_bytes)
    conv.close()
    segs = conv.segments          # a plain list: reorder, duplicate (retransmit) or drop freely
    frames = render(segs, LINKTYPE_LINUX_SLL, snaplen=96)
    data = pcap_bytes(frames, linktype=LINKTYPE_LINUX_SLL, nanos=True, byteorder=">")

Each :class:`SynthSegment` remembers its direction and stream ``offset`` (bytes since the start of
that direction's data), so a test can compute what reassembly must deliver.
"""

from __future__ import annotations

import copy
import gzip
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..capture.writer import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    link_frame,
    pcap_header,
    pcap_record,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_option,
    pcapng_shb,
    pcapng_units,
    tcp_ip_packet,
)

__all__ = [
    "PcapngInterface",
    "SynthFrame",
    "SynthSegment",
    "TcpConversation",
    "gzip_bytes",
    "ip_packet",
    "link_frame",
    "pcap_bytes",
    "pcapng_bytes",
    "render",
    "retransmit",
]

_M = 0xFFFFFFFF


@dataclass
class SynthSegment:
    """One TCP segment of a synthetic conversation."""

    ts_ns: int
    direction: str  # "c2b" or "b2c"
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    payload: bytes = b""
    window: int = 65535
    #: Offset of ``payload`` in its direction's byte stream (``None`` for control segments).
    offset: int | None = None
    #: What the builder meant: ``syn``, ``ack``, ``data``, ``keepalive``, ``probe``, ``fin`` ...
    label: str = "data"
    #: Cut the frame to this many captured bytes (snap length), if set.
    snaplen: int | None = None


class SynthFrame(NamedTuple):
    """A rendered frame: captured bytes, original length, and the pcapng interface it is on."""

    ts_ns: int
    data: bytes
    orig_len: int
    interface: int = 0


class TcpConversation:
    """Scripts one TCP connection between a client and a broker.

    Timestamps advance by ``step_ns`` per segment unless ``at_ns`` is given. Sequence numbers are
    computed modulo 2**32, so an ISN near 2**32 makes them wrap.
    """

    def __init__(self, client: tuple[str, int] = ("10.0.0.1", 50000),
                 broker: tuple[str, int] = ("10.0.0.2", 1883), *, isn_client: int = 1000,
                 isn_broker: int = 500000, start_ns: int = 1_700_000_000_123_456_789,
                 step_ns: int = 1_000_000, handshake: bool = True, window: int = 65535) -> None:
        self.client = client
        self.broker = broker
        self.step_ns = step_ns
        self.t = start_ns
        self.window = window
        self.segments: list[SynthSegment] = []
        self.next_seq = {"c2b": isn_client & _M, "b2c": isn_broker & _M}
        self.sent = {"c2b": 0, "b2c": 0}
        self.stream = {"c2b": bytearray(), "b2c": bytearray()}
        if handshake:
            self._add("c2b", SYN, label="syn", ack=0)
            self.next_seq["c2b"] = (self.next_seq["c2b"] + 1) & _M
            self._add("b2c", SYN | ACK, label="syn")
            self.next_seq["b2c"] = (self.next_seq["b2c"] + 1) & _M
            self._add("c2b", ACK, label="ack")

    def _ends(self, d: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return (self.client, self.broker) if d == "c2b" else (self.broker, self.client)

    def _add(self, d: str, flags: int, payload: bytes = b"", *, seq: int | None = None,
             ack: int | None = None, window: int | None = None, offset: int | None = None,
             label: str = "data", at_ns: int | None = None) -> SynthSegment:
        other = "b2c" if d == "c2b" else "c2b"
        if at_ns is not None:
            self.t = at_ns
        src, dst = self._ends(d)
        seg = SynthSegment(self.t, d, src, dst, self.next_seq[d] if seq is None else seq & _M,
                           self.next_seq[other] if ack is None else ack & _M, flags, payload,
                           self.window if window is None else window, offset, label)
        self.segments.append(seg)
        self.t += self.step_ns
        return seg

    def send(self, direction: str, payload: bytes, *, segment_size: int | Sequence[int] | None
             = None, at_ns: int | None = None, ack: bool = True) -> list[SynthSegment]:
        """Send ``payload`` from one side, cut into segments (a size, a list of sizes, the
        last size repeating, or one segment); the peer ACKs afterwards if ``ack``."""
        sizes: list[int] = []
        if segment_size is None:
            sizes = [len(payload)]
        elif isinstance(segment_size, int):
            sizes = [segment_size]
        else:
            sizes = list(segment_size)
        out = []
        pos = 0
        i = 0
        while pos < len(payload):
            size = max(1, sizes[min(i, len(sizes) - 1)])
            chunk = payload[pos:pos + size]
            seg = self._add(direction, ACK | PSH, chunk, offset=self.sent[direction],
                            at_ns=at_ns if i == 0 else None)
            self.next_seq[direction] = (self.next_seq[direction] + len(chunk)) & _M
            self.sent[direction] += len(chunk)
            self.stream[direction] += chunk
            out.append(seg)
            pos += len(chunk)
            i += 1
        if ack and out:
            self._add("b2c" if direction == "c2b" else "c2b", ACK, label="ack")
        return out

    def pure_ack(self, direction: str, *, window: int | None = None) -> SynthSegment:
        """A segment with no data from ``direction`` acknowledging everything the peer sent."""
        return self._add(direction, ACK, window=window, label="ack")

    def keepalive(self, direction: str, *, with_byte: bool = False) -> SynthSegment:
        """A keep-alive: seq = next - 1, no data (Linux) or one garbage byte (Windows)."""
        return self._add(direction, ACK, b"\x00" if with_byte else b"",
                         seq=self.next_seq[direction] - 1, label="keepalive")

    def zero_window_probe(self, direction: str, byte: bytes) -> SynthSegment:
        """The receiver closes its window, the sender probes with ``byte`` (the next byte it
        will send, not advancing), and the receiver reopens the window. The caller then sends
        the data starting with that byte."""
        other = "b2c" if direction == "c2b" else "c2b"
        self.pure_ack(other, window=0)
        seg = self._add(direction, ACK, byte[:1], label="probe", offset=self.sent[direction])
        self.pure_ack(other)
        return seg

    def close(self, how: str = "fin", by: str = "c2b") -> None:
        """End the connection: a FIN exchange (FIN, FIN-ACK, ACK) or a RST from ``by``."""
        other = "b2c" if by == "c2b" else "c2b"
        if how == "rst":
            self._add(by, RST | ACK, label="rst")
            return
        self._add(by, FIN | ACK, label="fin")
        self.next_seq[by] = (self.next_seq[by] + 1) & _M
        self._add(other, FIN | ACK, label="fin")
        self.next_seq[other] = (self.next_seq[other] + 1) & _M
        self._add(by, ACK, label="ack")


def retransmit(segments: list[SynthSegment], index: int, at: int | None = None,
               *, delay_ns: int = 1000) -> SynthSegment:
    """Insert a copy of ``segments[index]`` at position ``at`` (default: right after it)."""
    dup = copy.copy(segments[index])
    dup.label = "retransmission"
    pos = index + 1 if at is None else at
    prev = segments[pos - 1].ts_ns if pos > 0 else dup.ts_ns
    dup.ts_ns = prev + delay_ns
    segments.insert(pos, dup)
    return dup


# -- packets -----------------------------------------------------------------------------------


def ip_packet(seg: SynthSegment, ident: int = 0) -> bytes:
    """The IPv4 or IPv6 packet (by address family) carrying ``seg``, with valid checksums."""
    return tcp_ip_packet(seg.src, seg.dst, seg.seq, seg.ack, seg.flags, seg.payload,
                         window=seg.window, ident=ident)


def render(segments: Iterable[SynthSegment], linktype: int = 1, *, vlan: Sequence[int] = (),
           snaplen: int | None = None, interface: int = 0, null_order: str = "<",
           af_inet6: int = 30) -> list[SynthFrame]:
    """Frames for ``segments``; each is cut to its own ``snaplen`` or to the global one."""
    frames = []
    for i, seg in enumerate(segments):
        data = link_frame(linktype, ip_packet(seg, i + 1), vlan=vlan, null_order=null_order,
                          af_inet6=af_inet6)
        cut = seg.snaplen if seg.snaplen is not None else snaplen
        frames.append(SynthFrame(seg.ts_ns, data[:cut] if cut is not None else data, len(data),
                                 interface))
    return frames


# -- files -------------------------------------------------------------------------------------


def pcap_bytes(frames: Iterable[SynthFrame], *, linktype: int = 1, byteorder: str = "<",
               nanos: bool = False, snaplen: int = 262144) -> bytes:
    """A classic pcap file: ``byteorder`` ``"<"`` or ``">"``, micro- or nanosecond stamps."""
    out = [pcap_header(linktype, nanos=nanos, byteorder=byteorder, snaplen=snaplen)]
    out += [pcap_record(f.ts_ns, f.data, f.orig_len, nanos=nanos, byteorder=byteorder)
            for f in frames]
    return b"".join(out)


@dataclass
class PcapngInterface:
    """An Interface Description Block: ``tsresol`` is the raw option byte (6 = microseconds,
    9 = ns, ``0x80 | k`` = 2**-k s), ``tsoffset`` whole seconds added to every stamp."""

    linktype: int
    tsresol: int = 6
    tsoffset: int = 0
    snaplen: int = 0
    name: str = field(default="")


def pcapng_bytes(frames: Iterable[SynthFrame], interfaces: Sequence[PcapngInterface], *,
                 byteorder: str = "<", kinds: Sequence[str] | None = None,
                 unknown_blocks: bool = True) -> bytes:
    """A pcapng file with one section. ``kinds`` gives per frame ``epb`` (default), ``spb``
    (interface 0, no timestamp) or ``pb`` (obsolete Packet Block). With ``unknown_blocks``, a
    block of an unknown type and a Name Resolution Block are mixed in (readers must skip
    them)."""
    o = byteorder
    out = [pcapng_shb(byteorder=o)]
    out += [pcapng_idb(i.linktype, tsresol=i.tsresol, tsoffset=i.tsoffset, snaplen=i.snaplen,
                       name=i.name, byteorder=o) for i in interfaces]
    if unknown_blocks:
        out.append(pcapng_block(0x0BADBEEF, b"ignore me", o))
        out.append(pcapng_block(4, pcapng_option(0, b"", o), o))
    for i, f in enumerate(frames):
        kind = kinds[i] if kinds is not None else "epb"
        if kind == "spb":
            out.append(pcapng_block(3, struct.pack(o + "I", f.orig_len) + f.data, o))
            continue
        iface = interfaces[f.interface]
        units = pcapng_units(f.ts_ns, iface.tsresol, iface.tsoffset)
        if kind == "pb":
            body = struct.pack(o + "HHIIII", f.interface, 0, units >> 32, units & _M,
                               len(f.data), f.orig_len)
            out.append(pcapng_block(2, body + f.data, o))
        else:
            out.append(pcapng_epb(f.interface, units, f.data, f.orig_len,
                                  options=pcapng_option(0, b"", o), byteorder=o))
        if unknown_blocks and i == 0:
            out.append(pcapng_block(5, struct.pack(o + "III", 0, 0, 0), o))  # Interface Stats
    return b"".join(out)


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed (readers detect it by magic)."""
    return gzip.compress(data, compresslevel=1, mtime=0)

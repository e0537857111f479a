"""Link, IP and TCP header parsing: a captured frame to a TCP segment (or a reason to skip it).

Hard rules, and why:

* **Parse in place.** Every function takes the buffer, the frame's start offset and its captured
  length, so the pipeline can parse straight out of the memory-mapped file; only the TCP payload
  is copied (one slice).
* **The IP length decides where the payload ends**, not the frame length: Ethernet pads short
  frames to 60 bytes and may append an FCS, and those bytes are not TCP data. An IPv4 total
  length of 0 (TCP segmentation offload, seen in captures taken on the sending host) means "use
  what was captured".
* **Snap-length truncation is measured, never hidden**: ``missing`` is the number of payload
  bytes the IP header promises beyond what was captured, so reassembly can record a gap.
* **Fragments are reported, not dropped silently.** A fragmented IPv4 or IPv6 datagram yields an
  :class:`IpFragment`; :class:`Defragmenter` reassembles the simple cases (all fragments seen,
  within bounded memory), after which the TCP segment is parsed as usual.
* Link types: Ethernet (1) with any stack of 802.1Q / 802.1ad (0x88a8) / 0x9100 VLAN tags, Linux
  cooked SLL (113) and SLL2 (276), BSD loopback NULL (0, host byte order) and LOOP (108, network
  byte order; both orders accepted, AF_INET6 is 24, 28 or 30 depending on the OS), raw IP
  (101, 12, 14, 228 IPv4, 229 IPv6). Non-IP and non-TCP frames return ``None`` quickly.
"""

from __future__ import annotations

import mmap
import socket
import struct
from typing import NamedTuple

__all__ = [
    "ACK",
    "FIN",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "PSH",
    "RST",
    "SYN",
    "Buffer",
    "Defragmenter",
    "IpFragment",
    "TcpSegment",
    "decode_tcp",
    "format_ip",
    "link_ip_offset",
    "parse_tcp",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

#: TCP header flag bits (RFC 9293 3.1), as parse_tcp returns them and the writer sets them.
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

#: What the parsers read from: a file mapped in memory or bytes.
Buffer = bytes | mmap.mmap

_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_AF_INET6 = frozenset({24, 28, 30, 10})
_H = struct.Struct("!H").unpack_from
_I = struct.Struct("!I").unpack_from
_IPV4 = struct.Struct("!BxHHHxB2x").unpack_from
_IPV6 = struct.Struct("!4xHBx").unpack_from
_TCP = struct.Struct("!HHIIBBH").unpack_from
_V6_EXT = frozenset({0, 43, 60, 51, 44})


def format_ip(packed: bytes) -> str:
    """Text form of a packed IPv4 (4 bytes) or IPv6 (16 bytes) address."""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


class TcpSegment(NamedTuple):
    """A parsed TCP segment. ``key`` identifies its direction of its connection: packed source
    address, destination address, source port and destination port."""

    key: bytes
    rkey: bytes
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    missing: int


class IpFragment(NamedTuple):
    """A frame holding a fragment of an IP datagram. ``segment`` is the TCP segment when this
    fragment completed the datagram and it could be reassembled, else ``None``."""

    src: bytes
    dst: bytes
    ident: int
    offset: int
    more: bool
    first_of_datagram: bool
    segment: TcpSegment | None


def link_ip_offset(linktype: int, buf: Buffer, start: int, caplen: int) -> tuple[int, int]:
    """``(ip_version, offset)`` of the IP header in a frame, or ``(0, 0)`` if it holds no IP."""
    end = start + caplen
    if linktype == LINKTYPE_ETHERNET:
        off = start + 12
        if off + 2 > end:
            return 0, 0
        (et,) = _H(buf, off)
        while et in _VLAN_TPIDS:
            off += 4
            if off + 2 > end:
                return 0, 0
            (et,) = _H(buf, off)
        off += 2
    elif linktype == LINKTYPE_LINUX_SLL:
        if caplen < 16:
            return 0, 0
        (et,) = _H(buf, start + 14)
        off = start + 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if caplen < 20:
            return 0, 0
        (et,) = _H(buf, start)
        off = start + 20
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if caplen < 4:
            return 0, 0
        (af,) = _I(buf, start)
        if af > 0xFFFF:  # the other byte order
            af = int.from_bytes(buf[start:start + 4], "little")
        off = start + 4
        if af == 2:
            return (4, off) if off < end else (0, 0)
        if af in _AF_INET6:
            return (6, off) if off < end else (0, 0)
        return 0, 0
    elif linktype in (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if caplen < 1:
            return 0, 0
        v = buf[start] >> 4
        return (v, start) if v in (4, 6) else (0, 0)
    else:
        return 0, 0
    if off >= end:
        return 0, 0
    if et == 0x0800:
        return 4, off
    if et == 0x86DD:
        return 6, off
    return 0, 0


def parse_tcp(buf: Buffer, src: bytes, dst: bytes, tcp: int, wire_end: int,
              cap_end: int) -> TcpSegment | None:
    """The TCP segment at ``tcp``; its payload runs to ``wire_end`` on the wire, of which bytes
    up to ``cap_end`` were captured. ``None`` if the header itself is not all there."""
    if tcp + 20 > cap_end or tcp + 20 > wire_end:
        return None
    sport, dport, seq, ack, doff, flags, win = _TCP(buf, tcp)
    hl = (doff >> 4) * 4
    if hl < 20 or tcp + hl > wire_end or tcp + hl > cap_end:
        return None
    p = tcp + hl
    have = min(wire_end, cap_end)
    ports = buf[tcp:tcp + 4]
    rports = ports[2:] + ports[:2]
    return TcpSegment(src + dst + ports, dst + src + rports, src, dst, sport, dport, seq, ack,
                      flags, win, buf[p:have], wire_end - have)


def _ipv4(buf: Buffer, off: int, end: int, orig_end: int,
          defrag: Defragmenter | None) -> TcpSegment | IpFragment | None:
    if off + 20 > end:
        return None
    vihl, total, ident, ff, proto = _IPV4(buf, off)
    if vihl >> 4 != 4 or proto != 6:
        return None
    ihl = (vihl & 15) * 4
    if ihl < 20 or off + ihl > end:
        return None
    wire_end = off + total if total else orig_end
    if total and total < ihl:
        return None
    if wire_end > orig_end:  # the IP length claims more than was on the wire: believe the frame
        wire_end = orig_end
    src = buf[off + 12:off + 16]
    dst = buf[off + 16:off + 20]
    if ff & 0x3FFF:
        frag_off = (ff & 0x1FFF) * 8
        more = bool(ff & 0x2000)
        data = buf[off + ihl:min(wire_end, end)]
        complete = wire_end <= end
        seg = None
        first = True
        if defrag is not None:
            first, whole = defrag.add((src, dst, ident, 4), frag_off, more, data, complete)
            if whole is not None:
                seg = parse_tcp(whole, src, dst, 0, len(whole), len(whole))
        return IpFragment(src, dst, ident, frag_off, more, first, seg)
    return parse_tcp(buf, src, dst, off + ihl, wire_end, end)


def _ipv6(buf: Buffer, off: int, end: int, orig_end: int,
          defrag: Defragmenter | None) -> TcpSegment | IpFragment | None:
    if off + 40 > end:
        return None
    plen, nh = _IPV6(buf, off)
    src = buf[off + 8:off + 24]
    dst = buf[off + 24:off + 40]
    wire_end = off + 40 + plen if plen else orig_end
    if wire_end > orig_end:
        wire_end = orig_end
    p = off + 40
    frag: tuple[int, bool, int] | None = None
    while nh in _V6_EXT:
        if p + 8 > end:
            return None
        nxt = buf[p]
        if nh == 44:
            fo, ident = struct.unpack_from("!2xHI", buf, p)
            if fo & 0xFFF9:  # a real fragment (offset or M set), not an atomic one
                frag = ((fo >> 3) * 8, bool(fo & 1), ident)
            p += 8
        elif nh == 51:
            p += (buf[p + 1] + 2) * 4
        else:
            p += (buf[p + 1] + 1) * 8
        nh = nxt
        if frag is not None:
            break
    if frag is not None:
        if nh != 6 and nh not in _V6_EXT:
            return None
        frag_off, more, ident = frag
        data = buf[p:min(wire_end, end)]
        seg = None
        first = True
        if defrag is not None:
            first, whole = defrag.add((src, dst, ident, 6), frag_off, more, data,
                                      wire_end <= end, proto=nh)
            if whole is not None:
                seg = _v6_upper(whole, src, dst, nh_hint=defrag.last_proto)
        return IpFragment(src, dst, ident, frag_off, more, first, seg)
    if nh != 6 or p > end:
        return None
    return parse_tcp(buf, src, dst, p, wire_end, end)


def _v6_upper(data: bytes, src: bytes, dst: bytes, nh_hint: int) -> TcpSegment | None:
    """Walk any extension headers left in a reassembled IPv6 fragmentable part to TCP."""
    nh = nh_hint
    p = 0
    while nh in _V6_EXT and nh != 44:
        if p + 8 > len(data):
            return None
        nxt = data[p]
        p += (data[p + 1] + 2) * 4 if nh == 51 else (data[p + 1] + 1) * 8
        nh = nxt
    if nh != 6:
        return None
    return parse_tcp(data, src, dst, p, len(data), len(data))


def decode_tcp(linktype: int, buf: Buffer, start: int, caplen: int, orig_len: int,
               defrag: Defragmenter | None = None) -> TcpSegment | IpFragment | None:
    """Parse a frame down to TCP: a :class:`TcpSegment`, an :class:`IpFragment`, or ``None``
    (not IP, not TCP, or headers cut short)."""
    ver, off = link_ip_offset(linktype, buf, start, caplen)
    if not ver:
        return None
    end = start + caplen
    orig_end = start + max(orig_len, caplen)
    if ver == 4:
        return _ipv4(buf, off, end, orig_end, defrag)
    return _ipv6(buf, off, end, orig_end, defrag)


class Defragmenter:
    """Reassembles IP datagrams from fragments, within bounds.

    Holds at most ``max_datagrams`` incomplete datagrams and ``max_bytes`` of fragment data; the
    oldest incomplete datagram is dropped first. A fragment cut by the snap length spoils its
    datagram (it is never completed, rather than completed with zeros).
    """

    def __init__(self, max_datagrams: int = 64, max_bytes: int = 4 << 20) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self._pending: dict[tuple[bytes, bytes, int, int], _Datagram] = {}
        self._bytes = 0
        self.last_proto = 6

    def add(self, key: tuple[bytes, bytes, int, int], offset: int, more: bool, data: bytes,
            complete: bool, proto: int = 6) -> tuple[bool, bytes | None]:
        """Add a fragment; returns ``(first_seen_of_datagram, reassembled_payload_or_None)``."""
        dg = self._pending.get(key)
        first = dg is None
        if dg is None:
            while len(self._pending) >= self.max_datagrams or (
                    self._pending and self._bytes + len(data) > self.max_bytes):
                old = next(iter(self._pending))
                self._bytes -= self._pending.pop(old).size
            dg = self._pending[key] = _Datagram()
        if offset == 0:
            dg.proto = proto
        if not complete:
            dg.spoiled = True
        dg.parts.append((offset, data))
        dg.size += len(data)
        self._bytes += len(data)
        if not more:
            dg.total = offset + len(data)
        if dg.total is None or dg.spoiled:
            return first, None
        parts = sorted(dg.parts)
        whole = bytearray()
        for off, part in parts:
            if off > len(whole):
                return first, None  # still a hole
            whole += part[len(whole) - off:]
        if len(whole) < dg.total:
            return first, None
        del self._pending[key]
        self._bytes -= dg.size
        self.last_proto = dg.proto
        return first, bytes(whole[:dg.total])


class _Datagram:
    __slots__ = ("parts", "proto", "size", "spoiled", "total")

    def __init__(self) -> None:
        self.parts: list[tuple[int, bytes]] = []
        self.size = 0
        self.total: int | None = None
        self.spoiled = False
        self.proto = 6

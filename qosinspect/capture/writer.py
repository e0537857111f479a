"""Writing captures: TCP/IP packets with valid checksums, link-layer frames, pcap and pcapng.

The readers of this package have one writer beside them, used wherever the project makes a
capture itself: the fault proxy's synthetic pcapng and the conversion of a tool's file
(:mod:`qosinspect.traffic.pcapng`), and the synthetic captures the tests build to order
(:mod:`qosinspect.testing.synthcap`). Pure and stdlib only: bytes in, bytes out, no file is
opened here.

What is written, and why:

- IPv4 (or IPv6, by the address family) and TCP headers without options, checksums computed
  over the pseudo-header as a receiver checks them (RFC 791, RFC 9293, RFC 8200), so every
  reader (Wireshark, scapy, ours) takes the packets as real. IPv4 sets Don't Fragment and a TTL
  of 64, as Linux does.
- Link types: Ethernet (1) with VLAN tags; as on a wire (made-up MAC addresses, padded to the
  60-byte minimum) or as Linux's loopback shows it (zero addresses, no padding); Linux cooked
  SLL (113) and SLL2 (276); BSD loopback NULL (0, host byte order) and LOOP (108); raw IP.
- pcap: the classic header and records, micro- or nanosecond stamps, either byte order.
- pcapng: blocks and options padded to 32 bits as the format requires; timestamps in the units
  of the interface's ``if_tsresol`` (and ``if_tsoffset``), which the readers honour.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

from .layers import (
    ACK,
    FIN,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PSH,
    RST,
    SYN,
)
from .pcapfile import (
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_BOM,
    PCAPNG_EPB,
    PCAPNG_IDB,
    PCAPNG_SHB,
)

__all__ = [
    "ACK",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "checksum",
    "link_frame",
    "pcap_header",
    "pcap_record",
    "pcapng_block",
    "pcapng_epb",
    "pcapng_idb",
    "pcapng_option",
    "pcapng_shb",
    "pcapng_units",
    "tcp_ip_packet",
]

_M = 0xFFFFFFFF


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum of the
    16-bit words, an odd last byte padded with zero."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def tcp_ip_packet(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
                  payload: bytes = b"", *, window: int = 65535, ident: int = 0) -> bytes:
    """The IPv4 or IPv6 packet (by the addresses' family) of one TCP segment from ``src`` to
    ``dst`` (host, port), with valid TCP and IPv4 header checksums. Sequence and acknowledgement
    numbers are taken modulo 2**32; ``ident`` is the IPv4 identification."""
    s = ipaddress.ip_address(src[0])
    d = ipaddress.ip_address(dst[0])
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & _M, ack & _M, 5 << 4, flags, window,
                      0, 0) + payload
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 6, len(tcp))
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    if s.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident & 0xFFFF, 0x4000, 64,
                          6, 0, s.packed, d.packed)
        return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + tcp
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, s.packed, d.packed) + tcp


def link_frame(linktype: int, ip: bytes, *, vlan: Sequence[int] = (), loopback: bool = False,
               null_order: str = "<", af_inet6: int = 30) -> bytes:
    """Wrap an IP packet in a link-layer header: Ethernet (1; VLAN tags of the given TPIDs;
    made-up MACs and padded to 60 bytes, or with ``loopback`` zero MACs and no padding, as on
    Linux's ``lo``), SLL (113), SLL2 (276), NULL (0, the address family in ``null_order``),
    LOOP (108), or raw IP (101, 228, 229, 12, 14)."""
    v6 = ip[0] >> 4 == 6
    et = 0x86DD if v6 else 0x0800
    if linktype == LINKTYPE_ETHERNET:
        hdr = b"\x00" * 12 if loopback else b"\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01"
        for i, tpid in enumerate(vlan):
            hdr += struct.pack("!HH", tpid, 100 + i)
        frame = hdr + struct.pack("!H", et) + ip
        return frame if loopback else frame + b"\x00" * max(0, 60 - len(frame))
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, et) + ip
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.pack("!HHIHBB8s", et, 0, 1, 772, 0, 6, b"\x00" * 8) + ip
    af = af_inet6 if v6 else 2
    if linktype == LINKTYPE_NULL:
        return struct.pack(null_order + "I", af) + ip
    if linktype == LINKTYPE_LOOP:
        return struct.pack("!I", af) + ip
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, 12, 14):  # 12, 14: DLT_RAW
        return ip
    raise ValueError(f"unsupported link type {linktype}")


# -- pcap ----------------------------------------------------------------------------------------


def pcap_header(linktype: int, *, nanos: bool = True, byteorder: str = "<",
                snaplen: int = 262144) -> bytes:
    """The 24-byte header of a classic pcap file (version 2.4)."""
    magic = PCAP_MAGIC_NS if nanos else PCAP_MAGIC_US
    return struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, data: bytes, orig_len: int | None = None, *, nanos: bool = True,
                byteorder: str = "<") -> bytes:
    """One pcap record: its header (stamp in the file's units) and the captured bytes."""
    sec, frac = divmod(ts_ns, 1_000_000_000)
    return struct.pack(byteorder + "IIII", sec, frac if nanos else frac // 1000, len(data),
                       len(data) if orig_len is None else orig_len) + data


# -- pcapng --------------------------------------------------------------------------------------


def pcapng_option(code: int, value: bytes, byteorder: str = "<") -> bytes:
    """One option (code, length, value padded to 32 bits); code 0 with no value ends a list."""
    return struct.pack(byteorder + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def pcapng_block(btype: int, body: bytes, byteorder: str = "<") -> bytes:
    """A block: type, total length, ``body`` padded to 32 bits, total length again."""
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(byteorder + "II", btype, n) + body + struct.pack(byteorder + "I", n)


def pcapng_shb(options: bytes = b"", byteorder: str = "<") -> bytes:
    """A Section Header Block (version 1.0, section length unknown) with ``options`` (made
    with :func:`pcapng_option`; the end of the list is added)."""
    shb = struct.pack(byteorder + "IHHq", PCAPNG_BOM, 1, 0, -1)
    return pcapng_block(PCAPNG_SHB, shb + options + pcapng_option(0, b"", byteorder), byteorder)


def pcapng_idb(linktype: int, *, tsresol: int = 9, tsoffset: int = 0, snaplen: int = 0,
               name: str = "", byteorder: str = "<") -> bytes:
    """An Interface Description Block: ``if_name`` when given, ``if_tsresol`` (the raw option
    byte: 6 microseconds, 9 nanoseconds, ``0x80 | k`` 2**-k s), ``if_tsoffset`` when not 0."""
    o = byteorder
    opts = pcapng_option(2, name.encode(), o) if name else b""
    opts += pcapng_option(9, bytes([tsresol]), o)
    if tsoffset:
        opts += pcapng_option(14, struct.pack(o + "q", tsoffset), o)
    body = struct.pack(o + "HHI", linktype, 0, snaplen) + opts + pcapng_option(0, b"", o)
    return pcapng_block(PCAPNG_IDB, body, o)


def pcapng_units(ts_ns: int, tsresol: int = 9, tsoffset: int = 0) -> int:
    """``ts_ns`` in the units of an interface's ``if_tsresol``, ``tsoffset`` seconds taken off."""
    ts = ts_ns - tsoffset * 1_000_000_000
    k = tsresol & 0x7F
    if tsresol & 0x80:
        return ts * (1 << k) // 1_000_000_000
    return int(ts * 10**k // 1_000_000_000)


def pcapng_epb(interface: int, units: int, data: bytes, orig_len: int | None = None, *,
               options: bytes = b"", byteorder: str = "<") -> bytes:
    """An Enhanced Packet Block: the stamp in the interface's units (:func:`pcapng_units`), the
    captured bytes padded to 32 bits, then ``options`` as given (ending with the end-of-options
    option when not empty)."""
    body = struct.pack(byteorder + "IIIII", interface, units >> 32, units & _M, len(data),
                       len(data) if orig_len is None else orig_len)
    return pcapng_block(PCAPNG_EPB, body + data + b"\x00" * (-len(data) % 4) + options, byteorder)

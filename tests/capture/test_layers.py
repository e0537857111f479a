"""Link, IP and TCP parsing: every link type, VLAN stacks, IP options, IPv6 extension headers,
fragments, padding and snap-length truncation."""

from __future__ import annotations

import struct

import pytest

from qosinspect.capture.layers import (
    Defragmenter,
    IpFragment,
    TcpSegment,
    decode_tcp,
    link_ip_offset,
)
from qosinspect.testing.synthcap import SynthSegment, ip_packet, link_frame

SEG4 = SynthSegment(0, "c2b", ("10.0.0.1", 50000), ("10.0.0.2", 1883), 2**32 - 3, 77, 0x18,
                    b"hello mqtt")
SEG6 = SynthSegment(0, "c2b", ("2001:db8::1", 50000), ("::1", 1883), 5, 6, 0x18, b"v6 data")


def decode(linktype: int, frame: bytes, orig_len: int | None = None,
           defrag: Defragmenter | None = None) -> TcpSegment | IpFragment | None:
    return decode_tcp(linktype, frame, 0, len(frame), orig_len or len(frame), defrag)


def check(seg: TcpSegment | IpFragment | None, want: SynthSegment) -> None:
    assert isinstance(seg, TcpSegment)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags) == (
        want.src[1], want.dst[1], want.seq, want.ack, want.flags)
    assert seg.payload == want.payload and seg.missing == 0
    assert seg.key == seg.src + seg.dst + struct.pack("!HH", seg.sport, seg.dport)
    assert seg.rkey == seg.dst + seg.src + struct.pack("!HH", seg.dport, seg.sport)


@pytest.mark.parametrize("linktype", [1, 113, 276, 0, 108, 101, 12])
@pytest.mark.parametrize("seg", [SEG4, SEG6], ids=["v4", "v6"])
def test_link_types(linktype: int, seg: SynthSegment) -> None:
    check(decode(linktype, link_frame(linktype, ip_packet(seg))), seg)


def test_raw_ipv4_ipv6_linktypes() -> None:
    check(decode(228, ip_packet(SEG4)), SEG4)
    check(decode(229, ip_packet(SEG6)), SEG6)


@pytest.mark.parametrize("vlan", [[0x8100], [0x88A8, 0x8100], [0x9100, 0x8100], [0x8100] * 3])
def test_vlan_stacks(vlan: list[int]) -> None:
    check(decode(1, link_frame(1, ip_packet(SEG4), vlan=vlan)), SEG4)
    check(decode(1, link_frame(1, ip_packet(SEG6), vlan=vlan)), SEG6)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("af", [24, 28, 30])
def test_null_loopback_byte_orders_and_inet6_values(order: str, af: int) -> None:
    check(decode(0, link_frame(0, ip_packet(SEG6), null_order=order, af_inet6=af)), SEG6)
    check(decode(0, link_frame(0, ip_packet(SEG4), null_order=order)), SEG4)
    check(decode(108, link_frame(108, ip_packet(SEG6), af_inet6=af)), SEG6)


def test_ethernet_padding_is_not_payload() -> None:
    seg = SynthSegment(0, "c2b", ("10.0.0.1", 1), ("10.0.0.2", 1883), 1, 1, 0x18, b"ab")
    frame = link_frame(1, ip_packet(seg))
    assert len(frame) == 60  # padded
    got = decode(1, frame + b"FCS!")
    assert isinstance(got, TcpSegment) and got.payload == b"ab"


def test_snaplen_truncation_is_measured() -> None:
    frame = link_frame(1, ip_packet(SEG4))
    got = decode_tcp(1, frame, 0, 14 + 20 + 20 + 4, len(frame))
    assert isinstance(got, TcpSegment)
    assert got.payload == b"hell" and got.missing == len(SEG4.payload) - 4
    assert decode_tcp(1, frame, 0, 14 + 30, len(frame)) is None  # TCP header cut: unusable


def test_tso_zero_total_length_uses_captured_bytes() -> None:
    ip = bytearray(ip_packet(SEG4))
    ip[2:4] = b"\x00\x00"
    got = decode(101, bytes(ip))
    assert isinstance(got, TcpSegment) and got.payload == SEG4.payload


def test_ipv4_options() -> None:
    ip = ip_packet(SEG4)
    opts = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    hdr = bytearray(ip[:20] + opts)
    hdr[0] = 0x46
    struct.pack_into("!H", hdr, 2, len(ip) + 4)
    check(decode(101, bytes(hdr) + ip[20:]), SEG4)


def v6_with_ext(exts: list[tuple[int, bytes]], seg: SynthSegment = SEG6) -> bytes:
    """Insert extension headers (type, body) between the IPv6 header and TCP."""
    ip = ip_packet(seg)
    tcp = ip[40:]
    chain = b""
    types = [t for t, _ in exts] + [6]
    for i, (_t, body) in enumerate(exts):
        chain += bytes([types[i + 1]]) + body
    hdr = bytearray(ip[:40])
    hdr[6] = types[0]
    struct.pack_into("!H", hdr, 4, len(chain) + len(tcp))
    return bytes(hdr) + chain + tcp


def test_ipv6_extension_headers() -> None:
    hop = b"\x00" + b"\x01\x04\x00\x00\x00\x00"  # len 0 (8 bytes): PadN
    dst = b"\x00" + b"\x01\x04\x00\x00\x00\x00"
    rt = b"\x00" + b"\x00\x00" + b"\x00\x00\x00\x00"  # type 0, segments left 0
    ah = b"\x04" + b"\x00\x00" + b"\x00" * 20  # payload len 4 -> (4+2)*4 = 24 bytes
    frag_atomic = b"\x00" + b"\x00\x00" + b"\x00\x00\x00\x01"
    check(decode(101, v6_with_ext([(0, hop), (43, rt), (60, dst), (51, ah)])), SEG6)
    check(decode(101, v6_with_ext([(44, frag_atomic)])), SEG6)


def test_not_tcp_is_skipped() -> None:
    ip = bytearray(ip_packet(SEG4))
    ip[9] = 17  # UDP
    assert decode(101, bytes(ip)) is None
    arp = b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28
    assert decode(1, arp) is None
    assert decode(1, b"\x00" * 10) is None
    assert decode(147, link_frame(101, ip_packet(SEG4))) is None  # unknown link type
    assert link_ip_offset(0, struct.pack("<I", 7) + b"\x45", 0, 5) == (0, 0)


def fragments_v4(seg: SynthSegment, cut: int) -> list[bytes]:
    ip = ip_packet(seg, ident=4242)
    body = ip[20:]
    out = []
    for off in range(0, len(body), cut):
        part = body[off:off + cut]
        more = off + cut < len(body)
        hdr = bytearray(ip[:20])
        struct.pack_into("!HHH", hdr, 2, 20 + len(part), 4242, (off // 8) | (0x2000 if more
                                                                             else 0))
        out.append(bytes(hdr) + part)
    return out


def test_ipv4_fragments_reported_and_reassembled() -> None:
    seg = SynthSegment(0, "c2b", ("10.0.0.1", 5), ("10.0.0.2", 1883), 9, 9, 0x18, b"Z" * 50)
    frags = fragments_v4(seg, 24)
    d = Defragmenter()
    got = [decode(101, f, defrag=d) for f in reversed(frags)]
    assert all(isinstance(g, IpFragment) for g in got)
    assert [g.first_of_datagram for g in got if isinstance(g, IpFragment)] == [True, False,
                                                                              False]
    last = got[-1]
    assert isinstance(last, IpFragment) and last.segment is not None
    assert last.segment.payload == seg.payload and last.segment.dport == 1883
    # without a defragmenter: reported, never parsed as a TCP segment
    only = decode(101, frags[0])
    assert isinstance(only, IpFragment) and only.segment is None and only.more


def test_ipv6_fragments_reassembled() -> None:
    ip = ip_packet(SEG6)
    body = ip[40:]
    d = Defragmenter()
    results = []
    for off, more in ((0, True), (16, False)):
        part = body[off:off + 16] if more else body[off:]
        fh = bytes([6, 0]) + struct.pack("!HI", (off // 8) << 3 | int(more), 99)
        hdr = bytearray(ip[:40])
        hdr[6] = 44
        struct.pack_into("!H", hdr, 4, 8 + len(part))
        results.append(decode(101, bytes(hdr) + fh + part, defrag=d))
    assert isinstance(results[0], IpFragment) and results[0].segment is None
    assert isinstance(results[1], IpFragment) and results[1].segment is not None
    check(results[1].segment, SEG6)


def test_defragmenter_is_bounded() -> None:
    d = Defragmenter(max_datagrams=2)
    for i in range(10):
        d.add((b"a", b"b", i, 4), 0, True, b"x" * 8, True)
    assert len(d._pending) == 2


def test_scapy_parses_synthetic_frames_identically() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    for seg in (SEG4, SEG6):
        pkt = scapy_all.Ether(link_frame(1, ip_packet(seg), vlan=[0x8100]))
        tcp = pkt[scapy_all.TCP]
        assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (seg.src[1], seg.dst[1], seg.seq,
                                                            seg.ack)
        assert bytes(tcp.payload) == seg.payload
        # checksums written by synthcap are valid: scapy recomputes the same values
        again = scapy_all.Ether(bytes(pkt))
        del again[scapy_all.TCP].chksum
        assert scapy_all.Ether(bytes(again))[scapy_all.TCP].chksum == tcp.chksum

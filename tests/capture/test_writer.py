"""The capture writer: checksums a receiver accepts, packets and frames the product's own
parsers (and tshark) read back field for field, pcap and pcapng files the reader takes with
their stamps exact in the units each file declares."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.capture.layers import TcpSegment, decode_tcp
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.writer import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    checksum,
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
from qosinspect.testing.tools import require_tool

V4 = (("10.0.0.1", 50000), ("10.0.0.2", 1883))
V6 = (("2001:db8::1", 50001), ("::1", 1883))
T0 = 1_700_000_000_123_456_789


def test_checksum_rfc_1071_example_and_odd_lengths() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0x2ddf0, folded 0xddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert checksum(b"\xab") == checksum(b"\xab\x00") == 0xFFFF - 0xAB00
    assert checksum(b"") == 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300).filter(lambda b: len(b) % 2 == 0))
def test_a_block_with_its_checksum_sums_to_zero(data: bytes) -> None:
    assert checksum(data + struct.pack("!H", checksum(data))) in (0, 0xFFFF)


def _verify(pkt: bytes) -> bytes:
    """The TCP header and payload of ``pkt`` after checking both checksums as a receiver
    does (a correct sum over header or pseudo-header and segment is 0)."""
    if pkt[0] >> 4 == 4:
        assert checksum(pkt[:20]) == 0
        assert struct.unpack("!H", pkt[2:4])[0] == len(pkt) and pkt[6:8] == b"\x40\x00"
        tcp = pkt[20:]
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    else:
        assert struct.unpack("!H", pkt[4:6])[0] == len(pkt) - 40 and pkt[6] == 6
        tcp = pkt[40:]
        pseudo = pkt[8:40] + struct.pack("!IxxxB", len(tcp), 6)
    assert checksum(pseudo + tcp) == 0
    return tcp


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([V4, V6]), st.integers(0, 2**33), st.integers(0, 2**33),
       st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST | ACK]),
       st.binary(max_size=200), st.integers(0, 65535), st.integers(0, 2**17))
def test_tcp_ip_packet_has_valid_checksums_and_reads_back(
        ends: tuple[tuple[str, int], tuple[str, int]], seq: int, ack: int, flags: int,
        payload: bytes, window: int, ident: int) -> None:
    src, dst = ends
    pkt = tcp_ip_packet(src, dst, seq, ack, flags, payload, window=window, ident=ident)
    tcp = _verify(pkt)
    assert struct.unpack("!H", tcp[14:16])[0] == window and tcp[12] == 5 << 4
    if pkt[0] >> 4 == 4:
        assert struct.unpack("!H", pkt[4:6])[0] == ident & 0xFFFF
    seg = decode_tcp(101, pkt, 0, len(pkt), len(pkt))
    assert isinstance(seg, TcpSegment)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.payload) == (
        src[1], dst[1], seq % 2**32, ack % 2**32, flags, payload)


@pytest.mark.parametrize(("linktype", "vlan"), [(1, ()), (1, (0x8100,)), (1, (0x88A8, 0x8100)),
                                                (113, ()), (276, ()), (0, ()), (108, ()),
                                                (101, ()), (228, ()), (229, ())])
@pytest.mark.parametrize("ends", [V4, V6], ids=["v4", "v6"])
def test_every_link_type_carries_the_packet_to_the_parser(
        linktype: int, vlan: tuple[int, ...], ends: tuple[tuple[str, int], tuple[str, int]]
        ) -> None:
    pkt = tcp_ip_packet(*ends, 7, 9, ACK | PSH, b"mqtt bytes")
    if (linktype == 228 and ends is V6) or (linktype == 229 and ends is V4):
        return              # 228 is raw IPv4 only, 229 raw IPv6 only
    frame = link_frame(linktype, pkt, vlan=vlan)
    seg = decode_tcp(linktype, frame, 0, len(frame), len(frame))
    assert isinstance(seg, TcpSegment)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.payload) == (
        ends[0][1], ends[1][1], 7, 9, b"mqtt bytes")


def test_ethernet_as_on_a_wire_or_as_on_the_loopback() -> None:
    pkt = tcp_ip_packet(*V4, 1, 1, ACK)                      # 40 bytes: a short frame
    wire = link_frame(1, pkt)
    assert len(wire) == 60 and wire[:12] == bytes.fromhex("000000000002000000000001")
    lo = link_frame(1, pkt, loopback=True)
    assert lo == b"\x00" * 12 + b"\x08\x00" + pkt           # Linux's lo: no padding
    assert link_frame(1, tcp_ip_packet(*V6, 1, 1, ACK), loopback=True)[12:14] == b"\x86\xdd"
    assert link_frame(0, pkt, null_order=">")[:4] == struct.pack(">I", 2)
    assert link_frame(0, tcp_ip_packet(*V6, 1, 1, ACK), af_inet6=24)[:4] == struct.pack("<I", 24)
    with pytest.raises(ValueError, match="unsupported link type 147"):
        link_frame(147, pkt)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanos", [True, False])
def test_pcap_files_read_back_with_exact_stamps(byteorder: str, nanos: bool) -> None:
    frame = link_frame(113, tcp_ip_packet(*V4, 1, 2, ACK | PSH, b"x" * 30))
    data = (pcap_header(113, nanos=nanos, byteorder=byteorder, snaplen=96)
            + pcap_record(T0, frame, nanos=nanos, byteorder=byteorder)
            + pcap_record(T0 + 1, frame[:20], len(frame), nanos=nanos, byteorder=byteorder))
    with CaptureFile.from_bytes(data) as cap:
        frames = list(cap.frames())
        assert cap.interfaces[0].snaplen == 96
    def stamp(ts: int) -> int:
        return ts if nanos else ts - ts % 1000                # microseconds drop the rest

    assert [(f.ts_ns, f.linktype, f.data, f.orig_len) for f in frames] == [
        (stamp(T0), 113, frame, len(frame)), (stamp(T0 + 1), 113, frame[:20], len(frame))]


@pytest.mark.parametrize("tsresol", [9, 6, 3, 0x80 | 30, 0x80 | 10])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_pcapng_files_read_back_in_the_units_each_interface_declares(
        tsresol: int, byteorder: str) -> None:
    o = byteorder
    eth = link_frame(1, tcp_ip_packet(*V4, 1, 2, ACK | PSH, b"abc"), loopback=True)
    raw = tcp_ip_packet(*V6, 3, 4, ACK, b"defg")
    data = (pcapng_shb(pcapng_option(4, b"test writer", o) + pcapng_option(1, b"hi", o), o)
            + pcapng_idb(1, tsresol=9, name="lo", byteorder=o)
            + pcapng_idb(101, tsresol=tsresol, tsoffset=-5, snaplen=64, byteorder=o)
            + pcapng_epb(0, pcapng_units(T0), eth, byteorder=o)
            + pcapng_epb(1, pcapng_units(T0, tsresol, -5), raw, len(raw) + 8,
                         options=pcapng_option(1, b"a comment", o) + pcapng_option(0, b"", o),
                         byteorder=o))
    with CaptureFile.from_bytes(data) as cap:
        frames = list(cap.frames())
        assert [(i.linktype, i.snaplen) for i in cap.interfaces] == [(1, 0), (101, 64)]
    exp = tsresol & 0x7F
    unit_ns = (1e9 / 2**exp) if tsresol & 0x80 else 10 ** (9 - exp)
    assert [(f.linktype, f.data, f.orig_len) for f in frames] == [
        (1, eth, len(eth)), (101, raw, len(raw) + 8)]
    assert frames[0].ts_ns == T0                                  # if_tsresol 9: exact
    assert 0 <= T0 - frames[1].ts_ns <= max(unit_ns, 1)            # truncated to the unit


def test_blocks_and_options_are_padded_to_32_bits() -> None:
    for n in range(6):
        block = pcapng_block(0x0BADBEEF, b"x" * n)
        assert len(block) % 4 == 0
        assert struct.unpack("<I", block[4:8]) == struct.unpack("<I", block[-4:]) == (
            len(block),)
        assert len(pcapng_option(1, b"y" * n)) == 4 + n + (-n % 4)
    assert pcapng_units(T0, 9, 1) == T0 - 1_000_000_000
    assert pcapng_units(T0, 6) == T0 // 1000
    assert pcapng_units(T0, 0x80 | 1) == T0 * 2 // 1_000_000_000


def test_tshark_reads_the_files_with_checksums_verified(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    frames = [(T0 + i, link_frame(1, tcp_ip_packet(*ends, 100 + i, 7, ACK | PSH, b"z" * i),
                                  loopback=i % 2 == 0))
              for i, ends in enumerate([V4, V6, V4, V6])]
    pcapng = tmp_path / "w.pcapng"
    pcapng.write_bytes(pcapng_shb() + pcapng_idb(1)
                       + b"".join(pcapng_epb(0, pcapng_units(t), f) for t, f in frames))
    pcap = tmp_path / "w.pcap"
    pcap.write_bytes(pcap_header(1) + b"".join(pcap_record(t, f) for t, f in frames))
    for path in (pcapng, pcap):
        out = subprocess.run(
            [tshark, "-r", str(path), "-n", "-o", "tcp.check_checksum:TRUE",
             "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "frame.time_epoch",
             "-e", "tcp.seq_raw", "-e", "tcp.checksum.status", "-e", "ip.checksum.status"],
            capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
        rows = [line.split("\t") for line in out]
        assert [r[1] for r in rows] == ["100", "101", "102", "103"]
        assert all(r[2] == "1" for r in rows)                        # TCP checksum good
        assert [r[3] for r in rows[::2]] == ["1", "1"]              # IPv4 header checksum good
        assert rows[0][0].endswith(str(T0 % 10**9).zfill(9))         # nanoseconds kept

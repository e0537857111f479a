"""pcap / pcapng / gzip readers: every variant written by synthcap reads back exactly."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from qosinspect.capture.pcapfile import MAX_CAPLEN, CaptureFile, TruncatedCapture, read_frames
from qosinspect.errors import CaptureError
from qosinspect.testing.synthcap import (
    PcapngInterface,
    SynthFrame,
    TcpConversation,
    gzip_bytes,
    pcap_bytes,
    pcapng_bytes,
    render,
)
from qosinspect.testing.tools import shared_captures

T0 = 1_700_000_000_123_456_789


def frames_for(n: int = 5, linktype: int = 1) -> list[SynthFrame]:
    conv = TcpConversation(start_ns=T0, step_ns=1_000_001)
    conv.send("c2b", b"x" * 40, segment_size=10)
    return render(conv.segments[:n], linktype)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_round_trip(order: str, nanos: bool) -> None:
    frames = frames_for()
    cap = CaptureFile.from_bytes(pcap_bytes(frames, linktype=1, byteorder=order, nanos=nanos))
    got = list(cap.frames())
    assert [f.frame_no for f in got] == [1, 2, 3, 4, 5]
    for want, have in zip(frames, got, strict=True):
        ts = want.ts_ns if nanos else want.ts_ns // 1000 * 1000
        assert have.ts_ns == ts
        assert have.data == want.data
        assert have.orig_len == want.orig_len
        assert have.linktype == 1


def test_pcap_snaplen_keeps_orig_len() -> None:
    frames = render(TcpConversation().segments, 1, snaplen=40)
    got = list(CaptureFile.from_bytes(pcap_bytes(frames)).frames())
    assert all(len(f.data) == 40 and f.orig_len == 60 for f in got)


def test_pcapng_two_interfaces_different_linktypes_and_resolutions() -> None:
    ifaces = [PcapngInterface(1, tsresol=6), PcapngInterface(113, tsresol=9, tsoffset=100),
              PcapngInterface(276, tsresol=0x80 | 9),
              PcapngInterface(0, tsresol=12, tsoffset=1_700_000_000)]
    conv = TcpConversation(start_ns=T0, step_ns=1_953_125 * 3)
    conv.send("c2b", b"y" * 30, segment_size=10)
    segs = conv.segments
    frames = []
    for i, seg in enumerate(segs):
        lt = ifaces[i % 4].linktype
        frames += [f._replace(interface=i % 4) for f in render([seg], lt)]
    data = pcapng_bytes(frames, ifaces)
    got = list(CaptureFile.from_bytes(data).frames())
    assert len(got) == len(frames)
    for i, (want, have) in enumerate(zip(frames, got, strict=True)):
        assert have.frame_no == i + 1
        assert have.linktype == ifaces[i % 4].linktype
        assert have.data == want.data
        res = ifaces[i % 4].tsresol
        if res == 6:
            assert have.ts_ns == want.ts_ns // 1000 * 1000
        elif res == 0x80 | 9:  # 2**-9 s units: the stamps were chosen to be exact
            assert have.ts_ns == want.ts_ns - (want.ts_ns % 1_953_125)
        else:
            assert have.ts_ns == want.ts_ns


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_block_kinds_and_byte_orders(order: str) -> None:
    frames = frames_for(4)
    data = pcapng_bytes(frames, [PcapngInterface(1, tsresol=9)], byteorder=order,
                        kinds=["epb", "spb", "pb", "epb"])
    got = list(CaptureFile.from_bytes(data).frames())
    assert [f.data for f in got] == [f.data for f in frames]
    # a Simple Packet Block has no timestamp: it repeats the previous frame's
    assert [f.ts_ns for f in got] == [frames[0].ts_ns, frames[0].ts_ns, frames[2].ts_ns,
                                       frames[3].ts_ns]


def test_pcapng_sections_of_both_byte_orders_concatenated() -> None:
    a = frames_for(2)
    b = frames_for(3)
    data = (pcapng_bytes(a, [PcapngInterface(1)], byteorder="<")
            + pcapng_bytes(b, [PcapngInterface(101, tsresol=9)], byteorder=">"))
    got = list(CaptureFile.from_bytes(data).frames())
    assert [f.frame_no for f in got] == [1, 2, 3, 4, 5]
    assert [f.linktype for f in got] == [1, 1, 101, 101, 101]


def test_gzip_file_and_stdin(tmp_path: Path) -> None:
    frames = frames_for()
    raw = pcap_bytes(frames, nanos=True)
    path = tmp_path / "c.pcap.gz"
    path.write_bytes(gzip_bytes(raw))
    assert [f.data for f in read_frames(path)] == [f.data for f in frames]
    with CaptureFile("-", stdin=io.BytesIO(gzip_bytes(raw))) as cap:
        assert len(list(cap.frames())) == 5
    with CaptureFile("-", stdin=io.BytesIO(raw)) as cap:
        assert [f.ts_ns for f in cap.frames()] == [f.ts_ns for f in frames]
    assert len(list(CaptureFile.from_bytes(gzip_bytes(raw)).frames())) == 5


def test_shared_captures_read() -> None:
    files = sorted(shared_captures().glob("*.pcap"))
    assert files
    for path in files:
        frames = list(read_frames(path))
        assert frames, path
        assert [f.frame_no for f in frames] == list(range(1, len(frames) + 1))
        assert all(f.ts_ns > 10**18 for f in frames)


# -- errors ------------------------------------------------------------------------------------


def collect_until_error(data: bytes) -> tuple[list[int], CaptureError]:
    seen: list[int] = []
    with pytest.raises(CaptureError) as info:
        for f in CaptureFile.from_bytes(data, "bad.pcap").frames():
            seen.append(f.frame_no)
    return seen, info.value


def test_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not a pcap"):
        CaptureFile.from_bytes(b"hello world, no capture here")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(CaptureError, match="too short"):
        CaptureFile(empty)
    with pytest.raises(CaptureError, match="cannot read"):
        CaptureFile(tmp_path / "missing.pcap")


def test_truncated_last_record_after_good_frames() -> None:
    data = pcap_bytes(frames_for())
    seen, err = collect_until_error(data[:-7])
    assert seen == [1, 2, 3, 4]
    assert isinstance(err, TruncatedCapture)
    assert err.frame == 5 and err.path == "bad.pcap"
    assert err.offset == len(data) - 16 - len(frames_for()[4].data)
    assert "truncated record" in str(err) and "frame 5" in str(err)


def test_truncated_record_header() -> None:
    data = pcap_bytes(frames_for(2))
    seen, err = collect_until_error(data + b"\x00" * 5)
    assert seen == [1, 2] and isinstance(err, TruncatedCapture) and err.offset == len(data)


def test_absurd_caplen_is_corrupt() -> None:
    data = bytearray(pcap_bytes(frames_for(3)))
    second = 24 + 16 + 60
    struct.pack_into("<I", data, second + 8, MAX_CAPLEN + 1)
    seen, err = collect_until_error(bytes(data))
    assert seen == [1] and not isinstance(err, TruncatedCapture)
    assert err.frame == 2 and err.offset == second


def test_pcapng_corrupt_block_length() -> None:
    frames = frames_for(3)
    data = bytearray(pcapng_bytes(frames, [PcapngInterface(1)], unknown_blocks=False))
    # find the second EPB and spoil its length
    offs = []
    off = 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if btype == 6:
            offs.append(off)
        off += blen
    struct.pack_into("<I", data, offs[1] + 4, 13)
    seen, err = collect_until_error(bytes(data))
    assert seen == [1] and err.frame == 2 and err.offset == offs[1]
    assert "corrupt block length 13" in str(err)
    # a trailing length that disagrees
    data2 = bytearray(pcapng_bytes(frames, [PcapngInterface(1)], unknown_blocks=False))
    blen = struct.unpack_from("<I", data2, offs[2] + 4)[0]
    struct.pack_into("<I", data2, offs[2] + blen - 4, blen + 4)
    seen, err = collect_until_error(bytes(data2))
    assert seen == [1, 2] and err.offset == offs[2] and "trailing length" in str(err)
    # a block running past the end of the file
    seen, err = collect_until_error(bytes(data2[:offs[2] + 20]))
    assert seen == [1, 2] and isinstance(err, TruncatedCapture) and err.frame == 3


def test_pcapng_unknown_interface() -> None:
    frames = [f._replace(interface=3) for f in frames_for(1)]
    ifaces = [PcapngInterface(1)] * 4
    data = pcapng_bytes(frames, ifaces)
    only_one = pcapng_bytes(frames_for(1), [PcapngInterface(1)])
    assert len(list(CaptureFile.from_bytes(data).frames())) == 1
    bad = bytearray(only_one)
    off = 0
    while struct.unpack_from("<I", bad, off)[0] != 6:
        off += struct.unpack_from("<I", bad, off + 4)[0]
    struct.pack_into("<I", bad, off + 8, 7)
    seen, err = collect_until_error(bytes(bad))
    assert seen == [] and "interface 7" in str(err)

"""The capture's clock (qosinspect/capture/clock.py): time 0 is the file's first frame, clock
jumps are noted with their frame, timestamps out of range are clamped and noted, and corrupt
gzip is a CaptureError. Every case runs on the pure path and with the C accelerator (when
built): the C walker hands such frames to the Python reader, so both must say the same.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qosinspect import _accel
from qosinspect.analysis.api import analyze
from qosinspect.capture import iter_events
from qosinspect.capture.clock import JUMP_GAP_NS, TS_LIMIT
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.cli import main
from qosinspect.errors import CaptureError
from qosinspect.events import Anomaly, CaptureStarted, MqttPacketEvent
from qosinspect.mqtt import ConnAck, Connect, PubAck, Publish, encode
from qosinspect.testing.synthcap import (
    PcapngInterface,
    SynthFrame,
    TcpConversation,
    gzip_bytes,
    pcap_bytes,
    pcapng_bytes,
    render,
)

START = 1_700_000_000_000_000_000
PATHS = [pytest.param(False, id="pure"), pytest.param(True, id="accelerated")]


def session(start_ns: int = START) -> TcpConversation:
    conv = TcpConversation(start_ns=start_ns, step_ns=1_000_000)
    conv.send("c2b", encode(Connect("clock")))
    conv.send("b2c", encode(ConnAck()))
    conv.send("c2b", encode(Publish("t", b"x", 1, packet_id=1)))
    conv.send("b2c", encode(PubAck(1)))
    conv.close()
    return conv


def events(data: bytes, accelerated: bool, **options: Any) -> list[Any]:
    if accelerated and _accel.speedups is None:
        pytest.skip("qosinspect._speedups is not built")
    if accelerated:
        return list(iter_events(CaptureFile.from_bytes(data), **options))
    with _accel.pure():
        return list(iter_events(CaptureFile.from_bytes(data), **options))


def notes(evs: list[Any], kind: str) -> list[Anomaly]:
    return [e for e in evs if type(e) is Anomaly and e.kind == kind]


def with_frame_before(frames: list[SynthFrame], ts_ns: int) -> list[SynthFrame]:
    """A non-TCP frame (an ARP request) first: time 0 is its time, not the SYN's."""
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
    return [SynthFrame(ts_ns, arp, len(arp)), *frames]


@pytest.mark.parametrize("accelerated", PATHS)
def test_time_zero_is_the_first_frame_of_the_file(accelerated: bool) -> None:
    frames = with_frame_before(render(session().segments), START - 5 * 10**9)
    evs = events(pcap_bytes(frames, nanos=True), accelerated)
    assert evs[0] == CaptureStarted(START - 5 * 10**9, 1)
    assert [e for e in evs if type(e) is CaptureStarted] == [evs[0]]
    stream = iter_events(CaptureFile.from_bytes(pcap_bytes(frames, nanos=True)))
    list(stream)
    assert stream.summary.t_first_ns == START - 5 * 10**9
    # the analysis's first timestamp follows (it is the earliest event's)
    assert analyze(evs).result.t_first == START - 5 * 10**9


@pytest.mark.parametrize("accelerated", PATHS)
def test_clock_going_back_is_a_note_with_its_frame(accelerated: bool) -> None:
    frames = render(session().segments)
    # frame 6 stamped an hour before frame 5 (merged captures, an NTP step)
    back = frames[5]._replace(ts_ns=frames[4].ts_ns - 3600 * 10**9)
    frames[5] = back
    evs = events(pcap_bytes(frames, nanos=True), accelerated)
    jumps = notes(evs, "clock_jump")
    assert [(j.frame, j.ts_ns) for j in jumps] == [(6, back.ts_ns)]
    assert "goes back 3600.0" in jumps[0].detail and "frame 6" in jumps[0].detail
    # the time of every frame is kept as the file says, and everything is still decoded
    assert len([e for e in evs if type(e) is MqttPacketEvent]) == 4


@pytest.mark.parametrize("accelerated", PATHS)
def test_small_steps_back_are_not_jumps(accelerated: bool) -> None:
    frames = render(session().segments)
    frames[5] = frames[5]._replace(ts_ns=frames[4].ts_ns - 500_000)  # half a millisecond
    assert not notes(events(pcap_bytes(frames, nanos=True), accelerated), "clock_jump")


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("accelerated", PATHS)
def test_gap_of_more_than_a_day_is_a_jump(accelerated: bool, ng: bool) -> None:
    first = render(session().segments)
    later = render(session(START + JUMP_GAP_NS + 10**9).segments)
    frames = first + later
    data = (pcapng_bytes(frames, [PcapngInterface(1, tsresol=9)]) if ng
            else pcap_bytes(frames, nanos=True))
    evs = events(data, accelerated)
    jumps = notes(evs, "clock_jump")
    assert [j.frame for j in jumps] == [len(first) + 1]
    assert "forward" in jumps[0].detail
    # exactly a day is not a jump
    later = render(session(first[-1].ts_ns + JUMP_GAP_NS).segments)
    assert not notes(events(pcap_bytes(first + later, nanos=True), accelerated), "clock_jump")


def out_of_range_capture() -> tuple[bytes, int]:
    """pcapng with 1-second units (if_tsresol 0): frame 5 is stamped 2**40 s after the epoch
    (beyond 64-bit nanoseconds); returns the bytes and frame 4's time."""
    frames = render(session().segments)
    frames = [f._replace(ts_ns=f.ts_ns - f.ts_ns % 10**9 + i * 10**9)
              for i, f in enumerate(frames)]
    frames[4] = frames[4]._replace(ts_ns=(1 << 40) * 10**9)
    return pcapng_bytes(frames, [PcapngInterface(1, tsresol=0)]), frames[3].ts_ns


@pytest.mark.parametrize("accelerated", PATHS)
def test_timestamp_beyond_64_bits_is_clamped_and_said(accelerated: bool) -> None:
    data, before = out_of_range_capture()
    evs = events(data, accelerated)
    bad = notes(evs, "timestamp_out_of_range")
    assert [(b.frame, b.ts_ns) for b in bad] == [(5, before)]
    assert str((1 << 40) * 10**9) in bad[0].detail
    assert all(0 <= e.ts_ns < TS_LIMIT for e in evs)
    assert len([e for e in evs if type(e) is MqttPacketEvent]) == 4
    # and the analysis takes it (it overflowed in the delivery matcher and the tables before)
    a = analyze(evs)
    assert len(a.exchanges) == 1 and len(a.connections) == 1


@pytest.mark.parametrize("accelerated", PATHS)
def test_negative_timestamp_is_clamped_and_said(accelerated: bool) -> None:
    frames = render(session(10**9).segments)  # 1 s after the epoch
    # if_tsoffset of -2 s: every frame is before 1970
    data = pcapng_bytes([f._replace(ts_ns=f.ts_ns - 2 * 10**9) for f in frames],
                        [PcapngInterface(1, tsresol=9, tsoffset=-2)])
    evs = events(data, accelerated)
    bad = notes(evs, "timestamp_out_of_range")
    assert [b.frame for b in bad] == list(range(1, len(frames) + 1))
    assert evs[0] == CaptureStarted(0, 1) and all(e.ts_ns == 0 for e in evs)


def test_report_on_out_of_range_timestamps_has_no_traceback(tmp_path: Path) -> None:
    data, _ = out_of_range_capture()
    path = tmp_path / "tsresol.pcapng"
    path.write_bytes(data)
    res = CliRunner().invoke(main, ["report", str(path), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert res.exception is None
    assert "timestamp_out_of_range" in res.output


def corrupt_gzip() -> list[bytes]:
    """gzip files damaged in the ways the fuzzer found: a flipped deflate byte (zlib.error), a
    cut stream (EOFError), a bad CRC, an unknown method, a stream of zeros."""
    whole = gzip_bytes(pcap_bytes(render(session().segments), nanos=True))
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF
    crc = bytearray(whole)
    crc[-8] ^= 0xFF
    header = bytearray(whole)
    header[2] = 7  # compression method: only 8 (deflate) exists
    return [bytes(flipped), whole[: len(whole) // 2], bytes(crc), bytes(header),
            whole[:2] + b"\x08\x00" + bytes(20)]


@pytest.mark.parametrize("case", range(5))
def test_corrupt_gzip_is_a_capture_error(case: int, tmp_path: Path) -> None:
    data = corrupt_gzip()[case]
    with pytest.raises((zlib.error, EOFError, OSError)):
        gzip.decompress(data)  # really corrupt
    with pytest.raises(CaptureError, match="corrupt gzip data"):
        CaptureFile.from_bytes(data)
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(data)
    with pytest.raises(CaptureError, match="corrupt gzip data") as info:
        list(iter_events(path))
    assert str(path) in str(info.value)
    for command in ("report", "decode"):
        res = CliRunner().invoke(main, [command, str(path)])
        assert res.exit_code != 0
        assert "Traceback" not in res.output and not isinstance(res.exception, zlib.error)
        assert "corrupt gzip data" in res.output


def test_report_names_the_clock_jump(tmp_path: Path) -> None:
    """The report carries each clock jump with its frame (JSON ``clock_jumps``, a line in the
    text), so spans and rates read with the jump in mind."""
    frames = render(session().segments)
    frames[5] = frames[5]._replace(ts_ns=frames[4].ts_ns - 3600 * 10**9)
    path = tmp_path / "jump.pcap"
    path.write_bytes(pcap_bytes(frames, nanos=True))
    result = CliRunner().invoke(main, ["report", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    jumps = json.loads(result.output)["clock_jumps"]
    assert [j["frame"] for j in jumps] == [6] and "goes back 3600.0" in jumps[0]["detail"]
    text = CliRunner().invoke(main, ["report", str(path)]).output
    assert "clock jump at frame 6:" in text

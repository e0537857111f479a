"""The stream readers (qosinspect.capture.stream): a pcap or pcapng arriving in pieces of any size
gives exactly the events of the same bytes read as a file, as the pieces arrive, through the
Python record walk (the reference) and through the C engine alike (the ``walk`` parameter)."""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from speedups._both import require_speedups  # tests/speedups (pytest puts tests/ on the path)

from qosinspect import _accel
from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.pcapfile import CaptureFile, TruncatedCapture
from qosinspect.capture.stream import StreamCapture, open_stream
from qosinspect.capture.writer import pcapng_epb, pcapng_idb, pcapng_shb, pcapng_units
from qosinspect.errors import CaptureError
from qosinspect.events import Event
from qosinspect.testing.tools import stop_process

WALKS = ["python", "c"]


@contextlib.contextmanager
def walking(walk: str) -> Iterator[None]:
    """Decoders made inside take the Python record walk and pipeline (``python``) or the C
    engine (``c``: the accelerator must be built)."""
    if walk == "python":
        with _accel.pure():
            yield
    else:
        require_speedups()
        yield


@pytest.fixture(params=WALKS)
def walk(request: pytest.FixtureRequest) -> Iterator[str]:
    with walking(request.param):
        yield request.param

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
#: Real peers: mosquitto and its clients, a reconnection with redelivery (20 kB).
PCAP = (CAPTURES / "mosquitto-redelivery.pcap").read_bytes()
#: Small (5.5 kB), for the every-size loop.
SMALL = (CAPTURES / "mosquitto-nonstandard-port.pcap").read_bytes()


def to_pcapng(pcap: bytes) -> bytes:
    """The same frames as a pcapng of two sections (little-endian, then big-endian), so a
    stream must carry the byte order and the interfaces from piece to piece."""
    with CaptureFile.from_bytes(pcap) as cap:
        frames = list(cap.frames())
        lt = cap.interfaces[0].linktype
    half = len(frames) // 2
    out = b""
    for order, part in (("<", frames[:half]), (">", frames[half:])):
        out += pcapng_shb(byteorder=order) + pcapng_idb(lt, tsresol=9, byteorder=order)
        for f in part:
            out += pcapng_epb(0, pcapng_units(f.ts_ns), f.data, f.orig_len, byteorder=order)
    return out


PCAPNG = to_pcapng(PCAP)
SMALL_NG = to_pcapng(SMALL)


class Pieces:
    """A stream that hands over exactly the given pieces, one per read."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.pieces: list[bytes] = []
        pos = 0
        for n in sizes:
            if pos >= len(data):
                break
            self.pieces.append(data[pos:pos + n])
            pos += n
        if pos < len(data):
            self.pieces.append(data[pos:])

    def read(self, n: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def file_events(data: bytes, ports: tuple[int, ...] = (1883,)) -> list[Event]:
    return list(CaptureDecoder(CaptureFile.from_bytes(data), ports=ports))


def stream_events(src: object, ports: tuple[int, ...] = (1883,)) -> list[Event]:
    cap = StreamCapture(src)  # type: ignore[arg-type]
    return list(CaptureDecoder(cap, ports=ports))


EXPECTED = {"pcap": file_events(PCAP), "pcapng": file_events(PCAPNG)}
DATA = {"pcap": PCAP, "pcapng": PCAPNG}


def test_pcapng_copy_is_the_same_capture() -> None:
    """The two-section pcapng holds the pcap's frames: same events (sanity of the fixture)."""
    assert EXPECTED["pcap"] == EXPECTED["pcapng"]
    assert sum(1 for e in EXPECTED["pcap"] if type(e).__name__ == "MqttPacketEvent") > 50


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_every_piece_size(fmt: str, walk: str) -> None:
    """Pieces of every size from 1 byte to 64 and a few larger ones: a partial record (or a
    partial header, length field included) waits for the next read."""
    data = SMALL if fmt == "pcap" else SMALL_NG
    expected = file_events(data, (1883, 18867))
    assert expected
    for size in [*range(1, 65), 1000, 4096, len(data)]:
        got = stream_events(Pieces(data, [size] * len(data)), (1883, 18867))
        assert got == expected, f"pieces of {size} bytes"


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(["pcap", "pcapng"]), walk=st.sampled_from(WALKS),
       sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=60))
def test_any_piece_sizes(fmt: str, walk: str, sizes: list[int]) -> None:
    with walking(walk):
        assert stream_events(Pieces(DATA[fmt], sizes)) == EXPECTED[fmt]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gzip_stream(fmt: str, walk: str) -> None:
    data = gzip.compress(DATA[fmt])
    assert stream_events(Pieces(data, [7] * len(data))) == EXPECTED[fmt]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_events_come_before_the_pipe_closes(fmt: str, walk: str) -> None:
    """Through a real pipe: the first half of the capture gives its events while the writer
    still holds the pipe open (a spooling reader would wait for the end)."""
    data = DATA[fmt]
    r, w = os.pipe()
    seen_early = threading.Event()

    def writer() -> None:
        with os.fdopen(w, "wb", buffering=0) as f:
            f.write(data[:len(data) // 2])
            seen_early.wait(20)
            for i in range(len(data) // 2, len(data), 333):
                f.write(data[i:i + 333])

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    events: list[Event] = []
    early = False
    with os.fdopen(r, "rb", buffering=0) as src:
        for ev in CaptureDecoder(StreamCapture(src)):
            events.append(ev)
            if type(ev).__name__ == "MqttPacketEvent" and not seen_early.is_set():
                early = t.is_alive()    # the writer is still waiting, pipe open
                seen_early.set()
    t.join(20)
    assert seen_early.is_set() and early
    assert events == EXPECTED[fmt]


def test_decode_dash_streams(tmp_path: Path) -> None:
    """``qosinspect decode -`` reads a pipe written slowly, and prints what the file gives."""
    path = tmp_path / "c.pcapng"
    path.write_bytes(PCAPNG)
    cmd = [str(Path(sys.executable).with_name("qosinspect")), "decode", "--format", "jsonl"]
    want = subprocess.run([*cmd, str(path)], capture_output=True, check=True, timeout=60).stdout
    proc = subprocess.Popen([*cmd, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        for i in range(0, len(PCAPNG), 4000):
            proc.stdin.write(PCAPNG[i:i + 4000])
            proc.stdin.flush()
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    assert out == want


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_cut_stream_is_the_files_error(fmt: str, walk: str) -> None:
    """A stream that ends inside a record: the events before it, then the same error (frame,
    byte offset in the whole stream) as the file cut at the same byte."""
    data = DATA[fmt][:len(DATA[fmt]) - 10]
    want: list[Event] = []
    with pytest.raises(TruncatedCapture) as from_file:
        for ev in CaptureDecoder(CaptureFile.from_bytes(data)):
            want.append(ev)
    events: list[Event] = []
    with pytest.raises(TruncatedCapture) as from_stream:
        for ev in CaptureDecoder(StreamCapture(Pieces(data, [100] * len(data)))):
            events.append(ev)
    assert (from_stream.value.frame, from_stream.value.offset, from_stream.value.message) == (
        from_file.value.frame, from_file.value.offset, from_file.value.message)
    assert events == want
    assert len(events) > 10


def record_offset(pcap: bytes | bytearray, index: int) -> int:
    """Where the record ``index`` (from 0) of a pcap starts."""
    off = 24
    for _ in range(index):
        caplen = int.from_bytes(pcap[off + 8:off + 12], "little")
        off += 16 + caplen
    return off


def test_corrupt_record_names_the_stream_offset(walk: str) -> None:
    data = bytearray(PCAP)
    off = record_offset(data, 4)
    data[off + 8:off + 12] = (10**7).to_bytes(4, "little")  # the 5th caplen becomes absurd
    with pytest.raises(CaptureError) as from_file:
        list(CaptureFile.from_bytes(bytes(data)).records())
    with pytest.raises(CaptureError) as from_records:
        list(StreamCapture(Pieces(bytes(data), [50] * len(data))).records())
    with pytest.raises(CaptureError) as from_decoder:
        stream_events(Pieces(bytes(data), [50] * len(data)))
    for got in (from_records.value, from_decoder.value):
        assert (got.frame, got.offset, got.message) == (
            from_file.value.frame, from_file.value.offset, from_file.value.message)
    assert (from_file.value.frame, from_file.value.offset) == (5, off)


@pytest.mark.parametrize("size", [1, 7, 100, 1000, 1 << 16])
def test_clock_going_back_mid_stream(walk: str, size: int) -> None:
    """A frame stamped a minute before the one before it: the C walk hands that record to the
    Python walk (the clock rules, a ``clock_jump`` note), in the middle of a piece or at its
    start; what follows resumes in C. Same events, notes included, as the file."""
    data = bytearray(PCAP)
    for index in (3, 40):
        off = record_offset(data, index)
        sec = int.from_bytes(data[off:off + 4], "little")
        data[off:off + 4] = (sec - 60).to_bytes(4, "little")
    expected = file_events(bytes(data))
    assert any(getattr(e, "kind", None) == "clock_jump" for e in expected)
    assert stream_events(Pieces(bytes(data), [size] * len(data))) == expected


def exotic_interface_capture() -> bytes:
    """SMALL as a pcapng whose second half comes through an interface stamped in units of
    2**-63 s (a resolution the C walk leaves to Python), from a time offset so the units fit."""
    with CaptureFile.from_bytes(SMALL) as cap:
        frames = list(cap.frames())
        lt = cap.interfaces[0].linktype
    t0 = frames[0].ts_ns // 10**9
    out = pcapng_shb() + pcapng_idb(lt, tsresol=9)
    half = len(frames) // 2
    for i, f in enumerate(frames[:half]):
        out += pcapng_epb(0, pcapng_units(t0 * 10**9 + i * 1000), f.data, f.orig_len)
    out += pcapng_idb(lt, tsresol=0x80 | 63, tsoffset=t0)
    for i, f in enumerate(frames[half:], start=half):
        units = pcapng_units(t0 * 10**9 + i * 1000, 0x80 | 63, t0)
        out += pcapng_epb(1, units, f.data, f.orig_len)
    return out


@pytest.mark.parametrize("size", [5, 64, 333, 4096])
def test_interface_the_c_walk_does_not_take(walk: str, size: int) -> None:
    """Pieces that resume with an interface the C walk cannot stamp with (2**-63 s) are walked
    by Python from their start; the events are the file's."""
    data = exotic_interface_capture()
    expected = file_events(data, (1883, 18867))
    assert sum(1 for e in expected if type(e).__name__ == "MqttPacketEvent") > 10
    assert stream_events(Pieces(data, [size] * len(data)), (1883, 18867)) == expected


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_on_frame_gets_every_frame(fmt: str, walk: str) -> None:
    """``on_frame`` (the flight recorder's feed) gets every frame, its bytes and stamps, once,
    in order, whatever the pieces."""
    data = DATA[fmt]
    want = [(f.frame_no, f.ts_ns, f.linktype, f.data, f.orig_len)
            for f in CaptureFile.from_bytes(data).frames()]
    got: list[tuple[int, int, int, bytes, int]] = []
    cap = StreamCapture(Pieces(data, [777] * len(data)),
                        on_frame=lambda *frame: got.append(frame))
    assert list(CaptureDecoder(cap)) == EXPECTED[fmt]
    assert got == want


def test_not_a_capture() -> None:
    with pytest.raises(CaptureError, match="not a pcap or pcapng"):
        StreamCapture(Pieces(b"hello world, no capture here", [3] * 20))


def test_follow_a_file_being_written(tmp_path: Path, walk: str) -> None:
    """``--follow``: the reader waits at the end of the file for the writer, and stops when
    asked (here once the writer is done and everything was read)."""
    path = tmp_path / "growing.pcapng"
    path.write_bytes(b"")
    done = threading.Event()

    def writer() -> None:
        with open(path, "ab", buffering=0) as f:
            for i in range(0, len(PCAPNG), 1500):
                f.write(PCAPNG[i:i + 1500])
                time.sleep(0.002)
        done.set()

    t = threading.Thread(target=writer, daemon=True)
    # the head must be there to open the stream: the writer starts first
    t.start()
    while path.stat().st_size < 32:
        time.sleep(0.01)
    caps: list[StreamCapture] = []
    with open_stream(str(path), follow=True,
                     stop=lambda: done.is_set() and caps[0].bytes_read == len(PCAPNG)) as cap:
        caps.append(cap)
        cap.poll_s = 0.02
        events = list(CaptureDecoder(cap))
    t.join(10)
    assert events == EXPECTED["pcapng"]


def stream_outcome(data: bytes, sizes: list[int]) -> tuple[list[Event], tuple[str, str] | None]:
    events: list[Event] = []
    try:
        for ev in CaptureDecoder(StreamCapture(Pieces(data, sizes)), ports=(1883, 18867)):
            events.append(ev)
    except CaptureError as exc:
        return events, (type(exc).__name__, str(exc))
    return events, None


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(["pcap", "pcapng"]),
       flips=st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)),
                      min_size=1, max_size=6),
       cut=st.integers(0, 64), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=30))
def test_damaged_streams_same_on_both_walks(fmt: str, flips: list[tuple[int, int]], cut: int,
                                            sizes: list[int]) -> None:
    """Bytes flipped (record and block headers among them) and the end cut: the C engine and
    the Python walk give the same events and the same error, frame and stream offset."""
    data = bytearray(SMALL if fmt == "pcap" else SMALL_NG)
    for at, value in flips:
        data[at % len(data)] = value
    damaged = bytes(data[:len(data) - cut])
    with walking("python"):
        want = stream_outcome(damaged, sizes)
    with walking("c"):
        assert stream_outcome(damaged, sizes) == want

"""Fuzzing: mutated and truncated versions of every capture decode without any exception
leaving the library but CaptureError, and without hanging (the work per input is bounded: the
number of events is checked against the input size, and pytest-timeout guards the rest).

Mutations, per example: up to 24 random byte changes (anywhere: file header, record headers,
link/IP/TCP headers, MQTT bytes), optionally a chunk of the file duplicated somewhere else, and
optionally truncation at a random offset. Every capture of ../shared/captures and captures/ is
a seed. The same mutations run through the pcapng reader by rewriting each seed as pcapng, and
through the gzip spooler on compressed seeds. Timestamps are mutated apart (``if_tsresol``,
``if_tsoffset``, the high word of packet blocks), through the analysis too.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qosinspect.analysis.api import analyze
from qosinspect.capture import iter_events
from qosinspect.capture.clock import TS_LIMIT
from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.pcapfile import PCAPNG_EPB, PCAPNG_IDB, CaptureFile
from qosinspect.capture.writer import pcapng_block, pcapng_epb, pcapng_option, pcapng_shb
from qosinspect.errors import CaptureError
from qosinspect.events import Anomaly, ConnectionClosed, MqttPacketEvent
from qosinspect.mqtt import Connect, Publish, encode
from qosinspect.testing.synthcap import (
    PcapngInterface,
    SynthFrame,
    TcpConversation,
    gzip_bytes,
    pcap_bytes,
    pcapng_bytes,
    render,
)
from qosinspect.testing.tools import PROJECT_ROOT, SHARED_CAPTURES

SEEDS = sorted(SHARED_CAPTURES.glob("*.pcap")) + sorted((PROJECT_ROOT / "captures").glob("*.pcap"))
#: Every broker port of the shipped captures (their TLS ones too: encrypted streams are seeds).
PORTS = sorted({1883} | {p for c in json.loads((PROJECT_ROOT / "captures" / "captures.json")
                                                .read_text()) for p in c["ports"]})
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

mutations = st.fixed_dictionaries({
    "flips": st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      max_size=24),
    "splice": st.none() | st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 400)),
    "cut": st.none() | st.floats(0, 1),
})


def mutate(data: bytes, m: dict[str, object]) -> bytes:
    buf = bytearray(data)
    for where, value in m["flips"]:  # type: ignore[attr-defined]
        buf[int(where * len(buf))] = value
    if m["splice"] is not None:
        src, dst, size = m["splice"]  # type: ignore[misc]
        a = int(src * len(buf))
        chunk = buf[a:a + size]
        b = int(dst * len(buf))
        buf[b:b] = chunk
    if m["cut"] is not None:
        del buf[int(m["cut"] * len(buf)):]  # type: ignore[call-overload]
    return bytes(buf)


def decode_all(data: bytes) -> int:
    """Decode fully; only CaptureError may come out. Returns the number of events."""
    n = 0
    try:
        cap = CaptureFile.from_bytes(data)
    except CaptureError:
        return 0
    try:
        for ev in iter_events(cap, ports=PORTS, mqtt_version=5):
            n += 1
            if type(ev) is MqttPacketEvent:
                assert ev.frame >= ev.first_frame >= 1
    except CaptureError as exc:
        assert str(exc)
    # bounded work: a frame yields a few records, a byte at most one MQTT packet
    assert n <= 4 * len(data) + 100
    return n


def as_pcapng(path: Path) -> bytes:
    """The same frames written as pcapng (one interface, nanosecond stamps)."""
    with CaptureFile(path) as cap:
        raw = list(cap.frames())
    frames = [SynthFrame(f.ts_ns, f.data, f.orig_len) for f in raw]
    return pcapng_bytes(frames, [PcapngInterface(raw[0].linktype, tsresol=9)])


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
@SETTINGS
@given(m=mutations)
def test_mutated_pcap(path: Path, m: dict[str, object]) -> None:
    decode_all(mutate(path.read_bytes(), m))


@pytest.mark.slow
@pytest.mark.parametrize("path", SEEDS[::4], ids=lambda p: p.name)
@SETTINGS
@given(m=mutations)
def test_mutated_pcapng(path: Path, m: dict[str, object]) -> None:
    decode_all(mutate(as_pcapng(path), m))


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_every_truncation_point_of_the_first_kilobytes(path: Path) -> None:
    data = path.read_bytes()
    whole = decode_all(data)
    assert whole > 0
    for cut in range(0, min(len(data), 1500), 7):
        decode_all(data[:cut])


GZIP_SEEDS = SEEDS[::6]


@pytest.mark.parametrize("path", GZIP_SEEDS, ids=lambda p: p.name)
@SETTINGS
@given(m=mutations)
def test_mutated_gzip(path: Path, m: dict[str, object]) -> None:
    """A corrupt gzip capture is a CaptureError, never zlib.error or EOFError (issue 11 §9:
    nine different zlib messages reached the user as a traceback)."""
    decode_all(mutate(gzip_bytes(path.read_bytes()), m))


timestamps = st.fixed_dictionaries({
    "tsresol": st.integers(0, 255),
    "tsoffset": st.integers(-(1 << 63), (1 << 63) - 1) | st.just(0),
    "highs": st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                st.integers(0, 0xFFFFFFFF)), max_size=6),
})


@pytest.mark.parametrize("path", SEEDS[::5], ids=lambda p: p.name)
@SETTINGS
@given(t=timestamps)
def test_mutated_timestamps_are_clamped_and_analysed(path: Path, t: dict[str, Any]) -> None:
    """pcapng ``if_tsresol``, ``if_tsoffset`` and timestamp words mutated (issue 11 §9): every
    event stays in the sane range (capture/clock.py) and the analysis and its report take them
    without OverflowError or struct.error."""
    data = bytearray(pcapng_with_clock(path, t["tsresol"], t["tsoffset"]))
    blocks = epb_offsets(bytes(data))
    for where, high in t["highs"]:
        off = blocks[int(where * len(blocks))]
        data[off + 12:off + 16] = high.to_bytes(4, "little")
    try:
        evs = list(iter_events(CaptureFile.from_bytes(bytes(data)), ports=PORTS))
    except CaptureError:
        return
    assert all(0 <= ev.ts_ns < TS_LIMIT for ev in evs)
    analysis = analyze(evs)
    analysis.report()
    analysis.exchanges  # noqa: B018 - the table builder is what overflowed


def pcapng_with_clock(path: Path, tsresol: int, tsoffset: int) -> bytes:
    """The seed's frames as pcapng on an interface with the given raw ``if_tsresol`` byte and
    ``if_tsoffset`` (the stamps written for nanoseconds, so they read as anything)."""
    with CaptureFile(path) as cap:
        raw = list(cap.frames())
    o = "<"
    blocks = [pcapng_shb(byteorder=o)]
    opts = pcapng_option(9, bytes([tsresol]), o)
    if tsoffset:
        opts += pcapng_option(14, struct.pack(o + "q", tsoffset), o)
    body = struct.pack(o + "HHI", raw[0].linktype, 0, 0) + opts + pcapng_option(0, b"", o)
    blocks.append(pcapng_block(PCAPNG_IDB, body, o))
    blocks += [pcapng_epb(0, f.ts_ns, f.data, f.orig_len, byteorder=o) for f in raw]
    return b"".join(blocks)


def epb_offsets(data: bytes) -> list[int]:
    out = []
    off = 0
    while off + 8 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if btype == PCAPNG_EPB:
            out.append(off)
        off += blen
    return out


def test_concurrent_connections_are_capped_with_eviction() -> None:
    """Issue 11 §9: 100,000 concurrent TCP streams took 414 MB in decode. The reassembler
    tracks at most ``max_flows`` connections; beyond, the least recently active tenth is
    closed (``evicted``) and said, and nothing already captured is lost: every packet is
    still decoded. Here 3,000 concurrent streams with a cap of 500."""
    frames = []
    for i in range(3000):
        conv = TcpConversation((f"10.1.{i >> 8}.{i & 255}", 40000), ("10.0.0.2", 1883),
                               start_ns=1_700_000_000_000_000_000 + i * 1000, step_ns=1)
        conv.send("c2b", encode(Connect(f"c{i}")))
        conv.send("c2b", encode(Publish("t", b"x", 1, packet_id=1)))
        frames += render(conv.segments)
    # the second half of every stream comes after all the streams were opened
    frames.sort(key=lambda f: f.ts_ns)
    late = [f._replace(ts_ns=f.ts_ns + 10**9) for f in frames]
    data = pcap_bytes(frames + late[-3:], nanos=True)
    dec = CaptureDecoder(CaptureFile.from_bytes(data), keep_tcp_stats=False, max_flows=500)
    most = 0
    evs = []
    for ev in dec:
        most = max(most, len(dec.pipeline.reassembler.halves) // 2)
        evs.append(ev)
    assert most <= 500
    closed = [e for e in evs if type(e) is ConnectionClosed]
    assert len([e for e in closed if e.how == "evicted"]) == dec.pipeline.reassembler.evicted
    assert dec.pipeline.reassembler.evicted >= 2500
    assert [e for e in evs if type(e) is Anomaly and e.kind == "connections_evicted"]
    assert len([e for e in evs if type(e) is MqttPacketEvent]) == 6000

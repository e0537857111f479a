"""The capture decoder with and without the C engine (``_speedups.CaptureEngine``) and the C
JSONL writer: identical event streams (every field of every event, in order), summaries, TCP
statistics, errors, and identical ``qosinspect decode`` output in every format.

Inputs: every capture shipped in captures/ and ../shared/captures (as pcap, and rewritten as
pcapng of both byte orders and several timestamp resolutions, with simple and obsolete packet
blocks); synthetic conversations on every link type the engine knows and one it does not
(scripted MQTT traffic cut into random segments, then reordered, duplicated and dropped, with
and without the handshake, on the MQTT port and on another one); and mutated and truncated
versions of the captures (byte flips, splices, cuts).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qosinspect import _accel
from qosinspect.capture.clock import TS_LIMIT
from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.layers import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.pipeline import CapturePipeline
from qosinspect.events import Anomaly
from qosinspect.mqtt import (
    Connect,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
    encode,
)
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

from ._both import capture_events, capture_lines, require_speedups

SEEDS = sorted(SHARED_CAPTURES.glob("*.pcap")) + sorted((PROJECT_ROOT / "captures").glob("*.pcap"))
PORTS = sorted({1883} | {p for c in json.loads((PROJECT_ROOT / "captures" / "captures.json")
                                                .read_text()) for p in c["ports"]})
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same(data: bytes, **options: Any) -> list[Any]:
    """Both paths agree on ``data``; returns the events."""
    pure = capture_events(data, False, **options)
    fast = capture_events(data, True, **options)
    assert fast[2] == pure[2]            # the error, if any
    assert fast[1] == pure[1]            # summary, TCP statistics included
    assert fast[0] == pure[0]            # every event
    return pure[0]


def assert_same_lines(data: bytes, **options: Any) -> None:
    for fmt in ("jsonl", "table", "csv"):
        assert capture_lines(data, fmt, True, **options) == capture_lines(data, fmt, False,
                                                                          **options)


def as_pcapng(data: bytes, tsresol: int, byteorder: str, kinds: str = "epb") -> bytes:
    with CaptureFile.from_bytes(data) as cap:
        raw = list(cap.frames())
    frames = [SynthFrame(f.ts_ns, f.data, f.orig_len) for f in raw]
    pick = {"epb": ["epb"], "mixed": ["epb", "pb", "epb", "spb"]}[kinds]
    return pcapng_bytes(frames, [PcapngInterface(raw[0].linktype, tsresol=tsresol,
                                                 tsoffset=-3)],
                        byteorder=byteorder, kinds=[pick[i % len(pick)] for i in range(len(raw))])


@pytest.fixture(autouse=True)
def _speedups() -> None:
    require_speedups()


# -- real captures ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_every_capture(path: Path) -> None:
    data = path.read_bytes()
    events = assert_same(data, ports=PORTS)
    assert events
    assert_same_lines(data, ports=PORTS)
    assert_same(data, ports=PORTS, detect_any_port=False, mqtt_version=5)


@pytest.mark.parametrize("path", SEEDS[::3], ids=lambda p: p.name)
@pytest.mark.parametrize(("tsresol", "order", "kinds"), [(9, "<", "epb"), (6, ">", "mixed"),
                                                         (0x80 | 20, "<", "mixed")])
def test_every_capture_as_pcapng(path: Path, tsresol: int, order: str, kinds: str) -> None:
    data = as_pcapng(path.read_bytes(), tsresol, order, kinds)
    assert_same(data, ports=PORTS)
    assert_same_lines(data, ports=PORTS)


def test_gzip_and_the_engine_really_decodes() -> None:
    """Not vacuous: on a real capture the C engine builds most packet events itself."""
    data = (PROJECT_ROOT / "captures" / "gen-qos1.pcap").read_bytes()
    assert_same(gzip_bytes(data), ports=PORTS)
    dec = CaptureDecoder(CaptureFile.from_bytes(data), ports=PORTS)
    assert list(dec)
    assert dec.pipeline._accel
    assert dec.pipeline.fused_packets > dec.summary.mqtt_packets // 2 > 0


def test_pipeline_records_without_the_mqtt_stage() -> None:
    """CapturePipeline alone (the engine's TCP part): the same records."""
    def records(data: bytes, pure: bool) -> list[Any]:
        if pure:
            with _accel.pure():
                pipe = CapturePipeline(CaptureFile.from_bytes(data), ports=PORTS)
        else:
            pipe = CapturePipeline(CaptureFile.from_bytes(data), ports=PORTS)
        out: list[Any] = []
        for r in pipe:
            f = r.flow
            out.append((type(r).__name__, f.conn_id if f is not None else None, tuple(r[1:])))
        return [*out, (pipe.frames, pipe.tcp_frames, pipe.flows_tracked, pipe.flows_ignored)]

    for path in SEEDS[::2]:
        data = path.read_bytes()
        assert records(data, False) == records(data, True)


# -- synthetic conversations --------------------------------------------------------------------

HOT = [PubAck(3), PubRec(4), PubRel(4), PubComp(4), PingReq(),
       Publish("t/1", b"a" * 10, 0), Publish("t/1", b"b" * 300, 1, False, False, 5),
       Publish("t/2", b"c", 2, True, True, 6), Publish("t/2", b"", 0)]


@st.composite
def conversations(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    version = draw(st.sampled_from([3, 4, 5]))
    port = draw(st.sampled_from([1883, 18830]))
    handshake = draw(st.booleans())
    conv = TcpConversation(("10.1.2.3", 40000), ("10.9.8.7", port), handshake=handshake,
                           isn_client=draw(st.sampled_from([1000, 2**32 - 50])))
    seg = st.integers(1, 600)
    if draw(st.booleans()):
        conv.send("c2b", encode(Connect("cid", version), version), segment_size=draw(seg))
        conv.send("b2c", b"\x20\x02\x00\x00" if version < 5 else b"\x20\x03\x00\x00\x00")
        conv.send("c2b", encode(Subscribe(1, (Subscription("t/#", 1),)), version))
    for _ in range(draw(st.integers(1, 6))):
        d = draw(st.sampled_from(["c2b", "b2c"]))
        body = b"".join(encode(p, version) for p in draw(st.lists(st.sampled_from(HOT),
                                                                   min_size=1, max_size=12)))
        conv.send(d, body, segment_size=draw(st.lists(seg, min_size=1, max_size=4)))
    if draw(st.booleans()):
        conv.close(draw(st.sampled_from(["fin", "rst"])))
    segments = conv.segments
    rng = random.Random(draw(st.integers(0, 2**16)))
    for _ in range(draw(st.integers(0, 3))):
        i = rng.randrange(len(segments))
        kind = draw(st.sampled_from(["swap", "dup", "drop"]))
        if kind == "swap" and i + 1 < len(segments):
            segments[i], segments[i + 1] = segments[i + 1], segments[i]
        elif kind == "dup":
            segments.insert(i + rng.randrange(1, 4), segments[i])
        elif kind == "drop" and len(segments) > 1:
            del segments[i]
    linktype = draw(st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
                                     LINKTYPE_NULL, LINKTYPE_LOOP, LINKTYPE_RAW]))
    vlan = draw(st.sampled_from([(), (100,)])) if linktype == LINKTYPE_ETHERNET else ()
    frames = render(segments, linktype, vlan=vlan,
                    snaplen=draw(st.sampled_from([None, None, 90])))
    if draw(st.booleans()):
        data = pcap_bytes(frames, linktype=linktype, byteorder=draw(st.sampled_from("<>")),
                          nanos=draw(st.booleans()))
    else:
        data = pcapng_bytes(frames, [PcapngInterface(linktype, tsresol=9)])
    return data, {"ports": (1883,), "mqtt_version": version}


@SETTINGS
@given(conv=conversations())
def test_synthetic_conversations(conv: tuple[bytes, dict[str, Any]]) -> None:
    data, options = conv
    assert_same(data, **options)
    assert_same_lines(data, **options)


def test_many_connections_interleaved() -> None:
    """Batches span connections: the engine must keep each stream's order and state."""
    frames: list[SynthFrame] = []
    convs = []
    for i in range(12):
        conv = TcpConversation((f"10.0.0.{i + 1}", 40000 + i), ("10.0.1.1", 1883),
                               start_ns=1_700_000_000_000_000_000 + i * 1000, step_ns=7_000)
        conv.send("c2b", encode(Connect(f"c{i}", 4), 4))
        conv.send("b2c", b"\x20\x02\x00\x00")
        for k in range(40):
            conv.send("c2b", encode(Publish(f"t/{k % 3}", bytes(k), 1, False, False, k + 1), 4),
                      segment_size=[7, 50])
            conv.send("b2c", encode(PubAck(k + 1), 4))
        convs.append(conv)
    for conv in convs:
        frames += render(conv.segments)
    frames.sort(key=lambda f: f.ts_ns)
    data = pcap_bytes(frames, nanos=True)
    assert len(assert_same(data)) > 12 * 80
    assert_same_lines(data)


# -- mutated captures ---------------------------------------------------------------------------

mutations = st.fixed_dictionaries({
    "flips": st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      max_size=16),
    "splice": st.none() | st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 400)),
    "cut": st.none() | st.floats(0, 1),
})


def mutate(data: bytes, m: dict[str, Any]) -> bytes:
    buf = bytearray(data)
    for where, value in m["flips"]:
        buf[int(where * len(buf))] = value
    if m["splice"] is not None:
        src, dst, size = m["splice"]
        a = int(src * len(buf))
        chunk = buf[a:a + size]
        b = int(dst * len(buf))
        buf[b:b] = chunk
    if m["cut"] is not None:
        del buf[int(m["cut"] * len(buf)):]
    return bytes(buf)


@pytest.mark.parametrize("path", SEEDS[::2], ids=lambda p: p.name)
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(m=mutations, ng=st.sampled_from([None, "<", ">"]))
def test_mutated_captures(path: Path, m: dict[str, Any], ng: str | None) -> None:
    data = path.read_bytes()
    if ng is not None:
        data = as_pcapng(data, 6, ng, "mixed")
    data = mutate(data, m)
    try:
        CaptureFile.from_bytes(data)
    except Exception:
        return
    assert_same(data, ports=PORTS, mqtt_version=5)
    assert_same_lines(data, ports=PORTS)


def test_timestamps_beyond_64_bits() -> None:
    """Packet blocks stamped past 2**63 ns: the C walker hands the walk to Python, which
    clamps them to the previous frame's time and says so (capture/clock.py), on both paths."""
    data = (PROJECT_ROOT / "captures" / "gen-qos2.pcap").read_bytes()
    ng = bytearray(as_pcapng(data, 9, "<"))
    off = 0
    epb = 0
    while off + 12 <= len(ng):
        btype, blen = int.from_bytes(ng[off:off + 4], "little"), int.from_bytes(
            ng[off + 4:off + 8], "little")
        if btype == 6:
            epb += 1
            if epb in (3, 7, 8):
                ng[off + 12:off + 16] = b"\xff\xff\xff\xff"  # timestamp high word
        off += blen
    assert epb > 8
    events = assert_same(bytes(ng), ports=PORTS)
    assert not any(getattr(ev, "ts_ns", 0) >= TS_LIMIT for ev in events)
    assert [ev.frame for ev in events if isinstance(ev, Anomaly)
            and ev.kind == "timestamp_out_of_range"] == [3, 7, 8]
    assert_same_lines(bytes(ng), ports=PORTS)

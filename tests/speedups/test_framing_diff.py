"""StreamDecoder with and without the C loop (``_speedups.stream_feed``): equal packets,
anomalies, sizes, offsets, pending bytes, versions and errors, on any bytes in any chunking.

Streams mix the packets the C loop takes (short acks, PUBLISH to a repeated topic at QoS 0/1/2,
MQTT 5 PUBLISH with and without properties, PINGREQ/PINGRESP, one- and two-byte remaining
lengths) with every other packet of the version (hypothesis strategies of tests/mqtt), CONNECTs
that change the version, random bytes, byte flips, insertions and deletions; they are fed in
random chunks with gaps between some, in strict and lenient mode, with the default and with a
small maximum packet size.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt._strategies import packets  # tests/mqtt (pytest puts tests/ on the path)

from qosinspect.errors import MQTTError
from qosinspect.mqtt import (
    Connect,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    StreamDecoder,
    encode,
)
from qosinspect.mqtt.properties import PropertyId

from ._both import both, require_speedups

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def hot_packets(version: int) -> list[bytes]:
    """The packets the C loop decodes itself (and a few it must hand back)."""
    out: list[Any] = [PingReq(), PingResp()]
    for pid in (1, 2, 0x1234):
        out += [PubAck(pid), PubRec(pid), PubRel(pid), PubComp(pid)]
    for qos in (0, 1, 2):
        for payload in (b"", b"x" * 5, b"y" * 200, b"z" * 17000):
            for topic in ("a/b", "sensor/ü"):
                out.append(Publish(topic, payload, qos, qos > 0 and len(payload) == 5,
                                   len(payload) == 200, 7 if qos else None))
    if version == 5:
        out.append(Publish("a/b", b"p", 1, False, False, 9,
                           Properties(((PropertyId.MESSAGE_EXPIRY_INTERVAL, 5),))))
        out.append(Publish("a/b", b"alias", 0, False, False, None,
                           Properties(((PropertyId.TOPIC_ALIAS, 3),))))
        out.append(Publish("", b"by alias", 0, False, False, None,
                           Properties(((PropertyId.TOPIC_ALIAS, 3),))))
        out.append(PubAck(4, 0x10))
    return [encode(p, version) for p in out]


def connect(version: int) -> bytes:
    return encode(Connect("c", version), version)


@st.composite
def streams(draw: st.DrawFn, version: int) -> tuple[list[bytes], list[int | None]]:
    """Chunks of a stream, and per chunk a gap (missing bytes) to declare before it."""
    hot = hot_packets(version)
    part = st.one_of(
        st.sampled_from(hot), st.sampled_from(hot), st.sampled_from(hot),
        packets(version).map(lambda p: encode(p, version)),
        st.sampled_from([connect(3), connect(4), connect(5)]),
        st.binary(min_size=1, max_size=6))
    data = bytearray(b"".join(draw(st.lists(part, max_size=30))))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at:at + draw(st.integers(1, 4))]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    bounds = [0, *cuts, len(data)]
    chunks = [bytes(data[a:b]) for a, b in itertools.pairwise(bounds)]
    gaps = draw(st.lists(st.none() | st.integers(0, 9), min_size=len(chunks),
                         max_size=len(chunks)))
    return chunks, gaps


def state(dec: StreamDecoder) -> tuple[Any, ...]:
    return (dec.offset, dec.pending, dec._need, dec._resync, dec.version, dec.version_known,
            list(dec.sizes), list(dec._chunks or ()))


def run(dec: StreamDecoder, chunks: list[bytes], gaps: list[int | None]) -> list[Any]:
    """Everything the decoder says and leaves behind, step by step."""
    seen: list[Any] = []
    for chunk, gap in zip(chunks, gaps, strict=True):
        if gap is not None:
            seen.append(("gap", dec.gap(gap), state(dec)))
        try:
            seen.append(("feed", dec.feed(chunk), state(dec)))
        except MQTTError as exc:
            seen.append(("error", type(exc).__name__, str(exc), exc.offset, exc.reason_code,
                         exc.packet_type, state(dec)))
    seen.append(("finish", dec.finish(), state(dec)))
    return seen


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("lenient", [True, False], ids=["lenient", "strict"])
@SETTINGS
@given(data=st.data())
def test_same_results_on_any_stream(version: int, lenient: bool, data: st.DataObject) -> None:
    require_speedups()
    chunks, gaps = data.draw(streams(version))
    if not lenient:
        gaps = [None] * len(gaps)
    max_size = data.draw(st.sampled_from([268_435_460, 300, 40]))
    kind = data.draw(st.sampled_from([bytes, bytes, bytearray, memoryview]))
    chunks = [kind(c) for c in chunks]
    pure, fast = both(lambda: StreamDecoder(version, lenient=lenient,
                                            max_packet_size=max_size))
    assert pure._accel is None and fast._accel is not None
    assert run(fast, chunks, gaps) == run(pure, chunks, gaps)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_byte_by_byte_and_whole(version: int) -> None:
    require_speedups()
    hot = hot_packets(version)
    small = [p for p in hot if len(p) < 1000]
    for chunking in (1, 2, 3, 5, 1460, None):
        parts = small if chunking is not None and chunking < 10 else hot
        stream = b"".join(parts) + connect(version) + b"".join(parts)
        size = chunking or len(stream)
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        pure, fast = both(lambda: StreamDecoder(version, lenient=True))
        got = run(fast, chunks, [None] * len(chunks))
        assert got == run(pure, chunks, [None] * len(chunks))
        packets_out = [p for step in got if step[0] == "feed" for p in step[1]]
        assert len(packets_out) == 2 * len(parts) + 1


def test_the_c_loop_builds_the_common_packets() -> None:
    """Not vacuous: with the C loop, the hot packets come out without the Python loop."""
    require_speedups()
    dec = StreamDecoder(4)
    dec._topics = {b"a/b": "a/b"}
    stream = b"".join([encode(PubAck(1), 4), encode(Publish("a/b", b"x", 1, False, False, 2), 4),
                       b"\xc0\x00"])
    calls: list[int] = []

    class Spy(StreamDecoder):
        __slots__ = ()

        def _decode(self, *args: Any, **kw: Any) -> int:
            calls.append(1)
            return super()._decode(*args, **kw)

    spy = Spy(4)
    spy._topics = {b"a/b": "a/b"}
    assert spy.feed(stream) == dec.feed(stream) == [
        PubAck(1), Publish("a/b", b"x", 1, False, False, 2), PingReq()]
    assert calls == []
    assert spy.feed(encode(Publish("new/topic", b"", 0), 4)) == [Publish("new/topic", b"", 0)]
    assert calls == [1]

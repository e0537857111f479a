"""Property tests (hypothesis) for the codec and the stream decoder.

- ``decode(encode(p)) == p`` for generated packets of every type in every version;
- the encoder is never more permissive than the decoder: for packets with arbitrary values,
  ``encode`` refuses (LocalProtocolError) or its bytes decode to the same packet;
- arbitrary bytes and mutated vectors raise only the codec's own errors (MQTTError subclasses);
  whatever decodes re-encodes to bytes that decode to the same packet;
- the lenient stream decoder never raises on any bytes cut anywhere, and accounts for every
  byte exactly once (in a packet, in an anomaly, or still pending).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qosinspect.errors import LocalProtocolError, MQTTError
from qosinspect.mqtt import (
    NEED_DATA,
    ConnectionDecoder,
    Direction,
    FramingAnomaly,
    Publish,
    StreamDecoder,
    decode,
    encode,
)

from ._strategies import packets, wild_packets
from ._vectors import load_peer_vectors, spec_errors, spec_packets

VERSIONS = st.sampled_from([3, 4, 5])
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = [v.data for v in spec_packets() + spec_errors() if len(v.data) < 300] + [
    bytes.fromhex(v["hex"]) for v in load_peer_vectors("peers") + load_peer_vectors("shared")
    if len(v["hex"]) < 600][::3]


def _versioned(draw: st.DrawFn) -> tuple[int, Any]:
    version = draw(VERSIONS)
    return version, draw(packets(version))


@FAST
@given(data=st.data())
def test_decode_of_encode_is_identity(data: st.DataObject) -> None:
    version, packet = _versioned(data.draw)
    wire = encode(packet, version)
    assert decode(wire, version) == (packet, len(wire))
    # the same through a memoryview cut out of a larger buffer
    assert decode(memoryview(b"\xff" + wire + b"\x00")[1:], version) == (packet, len(wire))


@pytest.mark.parametrize("version", [3, 4, 5])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_type_round_trips(version: int, data: st.DataObject) -> None:
    """The same, drawn per version so that each version gets its share of examples."""
    packet = data.draw(packets(version))
    wire = encode(packet, version)
    assert decode(wire, version) == (packet, len(wire))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packet=wild_packets(), version=VERSIONS)
def test_encoder_refuses_or_round_trips(packet: Any, version: int) -> None:
    try:
        wire = encode(packet, version)
    except LocalProtocolError:
        return
    assert decode(wire, version) == (packet, len(wire))


def _check_decode(buf: bytes, version: int) -> None:
    """decode() on any bytes: NEED_DATA, a packet, or an MQTTError -- nothing else."""
    try:
        result = decode(buf, version)
    except MQTTError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(buf)
        assert 0 <= exc.reason_code <= 0xFF
        return
    if result is NEED_DATA:
        return
    packet, size = result  # type: ignore[misc]
    assert 2 <= size <= len(buf)
    assert decode(buf[:size], version) == (packet, size)
    # What the decoder accepts the encoder can write, and it reads back the same.
    wire = encode(packet, version)
    assert decode(wire, version) == (packet, len(wire))


@settings(max_examples=600, deadline=None)
@given(buf=st.binary(max_size=64), version=VERSIONS)
def test_arbitrary_bytes_raise_only_codec_errors(buf: bytes, version: int) -> None:
    _check_decode(buf, version)


@settings(max_examples=400, deadline=None)
@given(first=st.integers(0, 255), body=st.binary(max_size=40), version=VERSIONS)
def test_arbitrary_bodies_behind_a_well_formed_header(first: int, body: bytes,
                                                      version: int) -> None:
    _check_decode(bytes((first, len(body))) + body, version)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid vector with a few bytes flipped, set, inserted, deleted, or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "length"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x23, 0x2B]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and data:
            del data[at:at + draw(st.integers(1, 3))]
        elif op == "truncate":
            del data[at:]
        elif op == "length" and len(data) > 1:
            data[1] = (data[1] + draw(st.sampled_from([-2, -1, 1, 2, 0x80]))) % 256
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buf=mutated(), version=VERSIONS)
def test_mutated_vectors_raise_only_codec_errors(buf: bytes, version: int) -> None:
    _check_decode(buf, version)


def _account(decoder: StreamDecoder, chunks: list[bytes]) -> None:
    """Feed ``chunks``; every byte must land in one packet or one anomaly, in stream order."""
    position = 0
    for chunk in chunks:
        out = decoder.feed(chunk)  # lenient: must never raise
        sizes = iter(decoder.sizes)
        for item in out:
            if isinstance(item, FramingAnomaly):
                assert item.offset == position, (item, position)
                position += item.size
            else:
                position += next(sizes)
        assert next(sizes, None) is None
        assert position == decoder.offset
    for item in decoder.finish():
        assert item.offset == position
        position += item.size
    assert position == sum(map(len, chunks)) and decoder.pending == 0


@st.composite
def chopped(draw: st.DrawFn, stream: st.SearchStrategy[bytes]) -> list[bytes]:
    data = draw(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


_streams = st.lists(st.one_of(mutated(), st.sampled_from(SEEDS), st.binary(max_size=12)),
                    max_size=6).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chopped(_streams), version=VERSIONS)
def test_lenient_stream_never_raises_and_loses_no_byte(chunks: list[bytes],
                                                        version: int) -> None:
    _account(StreamDecoder(version, lenient=True), chunks)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chopped(_streams), version=VERSIONS, limit=st.integers(2, 64))
def test_lenient_stream_with_a_small_maximum_packet_size(chunks: list[bytes], version: int,
                                                         limit: int) -> None:
    _account(StreamDecoder(version, lenient=True, max_packet_size=limit), chunks)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chopped(_streams), version=VERSIONS)
def test_strict_stream_raises_only_codec_errors(chunks: list[bytes], version: int) -> None:
    decoder = StreamDecoder(version)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except MQTTError as exc:
        assert exc.offset is None or 0 <= exc.offset <= sum(map(len, chunks))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds=st.lists(st.tuples(st.sampled_from(list(Direction)), _streams,
                                st.integers(0, 3)), max_size=6))
def test_connection_decoder_never_raises_with_gaps(feeds: list[tuple[Direction, bytes,
                                                                     int]]) -> None:
    conn = ConnectionDecoder()
    fed = {Direction.C2B: 0, Direction.B2C: 0}
    accounted = {Direction.C2B: 0, Direction.B2C: 0}
    for direction, data, gap in feeds:
        lost = conn.gap(direction, missing=7) if gap == 3 else []  # bytes never captured
        out = [*lost, *conn.feed(direction, data)]
        fed[direction] += len(data)
        accounted[direction] += sum(conn.stream(direction).sizes) + sum(
            a.size for a in out if isinstance(a, FramingAnomaly))
    for direction, anomaly in conn.finish():
        accounted[direction] += anomaly.size
    assert accounted == fed


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_streams_of_generated_packets_in_random_chunks(data: st.DataObject) -> None:
    version = data.draw(VERSIONS)
    # A topic left empty for an alias set nowhere in this stream would be refused (that is
    # test_framing's business): give every PUBLISH its topic. Its alias, if any, is then set.
    items = [p._replace(topic="t") if isinstance(p, Publish) and not p.topic else p
             for p in data.draw(st.lists(packets(version), min_size=1, max_size=8))]
    # A CONNECT of another version inside the stream would change how the rest reads.
    assume(all(getattr(p, "protocol_version", version) == version for p in items))
    wire = b"".join(encode(p, version) for p in items)
    chunks = data.draw(chopped(st.just(wire)))
    decoder = StreamDecoder(version)
    assert [p for chunk in chunks for p in decoder.feed(chunk)] == items

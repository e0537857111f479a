"""The stream decoder: chunks of any size, the version learnt from CONNECT for both directions,
MQTT 5 topic aliases per direction, strict and lenient modes, resynchronisation, gaps, the end.

Streams are built from the specification vectors; the real captures in captures/ and
../shared/captures run through ConnectionDecoder too, and every packet tshark saw must come out
of it in the same frame, with the topic aliases resolved as tshark resolved them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qosinspect.capture.pipeline import CapturePipeline
from qosinspect.capture.records import StreamData
from qosinspect.errors import MalformedPacket, PacketTooLarge, ProtocolError
from qosinspect.mqtt import (
    ConnAck,
    Connect,
    ConnectionDecoder,
    DecodeResult,
    Direction,
    FramingAnomaly,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    StreamDecoder,
    decode,
    encode,
)
from qosinspect.testing.tools import PROJECT_ROOT, require_tool, shared_captures

from ._vectors import load_peer_vectors, spec_packets

C2B, B2C = Direction.C2B, Direction.B2C
PING = b"\xc0\x00"


def stream_of(version: int, *, limit: int = 1024) -> tuple[bytes, list[bytes]]:
    """The spec vectors of one version, back to back (the 16 KiB one left out)."""
    parts = [v.data for v in spec_packets() if v.version == version and len(v.data) < limit]
    return b"".join(parts), parts


def feed_all(decoder: StreamDecoder, chunks: list[bytes]) -> tuple[list[DecodeResult], list[int]]:
    out: list[DecodeResult] = []
    sizes: list[int] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        sizes += decoder.sizes
    return out, sizes


def reference(version: int) -> tuple[bytes, list[DecodeResult]]:
    data, parts = stream_of(version)
    decoder = StreamDecoder(version)
    out = decoder.feed(data)
    assert decoder.sizes == [len(p) for p in parts]
    assert decoder.offset == len(data) and decoder.pending == 0
    return data, out


@pytest.mark.parametrize("version", [3, 4, 5])
def test_one_chunk_gives_the_vectors(version: int) -> None:
    _, out = reference(version)
    expected = [v.packet for v in spec_packets() if v.version == version and len(v.data) < 1024]
    assert len(out) == len(expected)
    for got, want in zip(out, expected, strict=True):
        if isinstance(want, Publish) and want.topic == "" and version == 5:
            # the stream decoder resolves the alias set earlier in the same stream (alias 3 ->
            # "a/b" by the publish-every-publish-property vector) [MQTT-3.3.2-12]
            assert got == want._replace(topic="a/b")
        else:
            assert got == want


@pytest.mark.parametrize("version", [3, 4, 5])
def test_byte_by_byte(version: int) -> None:
    data, expected = reference(version)
    decoder = StreamDecoder(version)
    out, sizes = feed_all(decoder, [data[i:i + 1] for i in range(len(data))])
    assert out == expected
    assert sum(sizes) == len(data)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_every_split_in_two(version: int) -> None:
    data, expected = reference(version)
    for cut in range(len(data) + 1):
        decoder = StreamDecoder(version)
        out, _ = feed_all(decoder, [data[:cut], data[cut:]])
        assert out == expected, cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from([3, 4, 5]), data=st.data())
def test_random_splits(version: int, data: st.DataObject) -> None:
    stream, expected = reference(version)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    kind = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
    decoder = StreamDecoder(version)
    out, sizes = feed_all(decoder, [kind(c) for c in chunks])  # type: ignore[misc]
    assert out == expected
    assert sum(sizes) == len(stream) and decoder.pending == 0


def test_a_16k_packet_byte_by_byte() -> None:
    (big,) = [v for v in spec_packets() if len(v.data) > 16384]
    decoder = StreamDecoder(4)
    out: list[DecodeResult] = []
    for i in range(len(big.data)):
        out += decoder.feed(big.data[i:i + 1])
        if i < len(big.data) - 1:
            assert decoder.pending == i + 1 and decoder.offset == 0
    assert out == [big.packet] and decoder.sizes == [16388]


def test_many_packets_in_one_chunk_and_one_across_chunks() -> None:
    acks = b"".join(encode(PubAck(i), 4) for i in range(1, 301))
    decoder = StreamDecoder(4)
    out = decoder.feed(acks[:-1])
    assert out == [PubAck(i) for i in range(1, 300)] and decoder.pending == 3
    assert decoder.feed(acks[-1:]) == [PubAck(300)]


# --- the version ----------------------------------------------------------------------------

def test_version_is_learnt_from_connect_in_the_same_chunk() -> None:
    connect = encode(Connect("c", 5), 5)
    publish = encode(Publish("t", b"x", 1, packet_id=1, properties=Properties.of(
        user_property=[("k", "v")])), 5)
    decoder = StreamDecoder(4)
    assert not decoder.version_known
    out = decoder.feed(connect + publish)
    assert out[1] == decode(publish, 5)[0]  # type: ignore[index]
    assert decoder.version == 5 and decoder.version_known


def test_version_3_from_connect_allows_dup_on_pubrel() -> None:
    decoder = StreamDecoder(4, lenient=True)
    out = decoder.feed(b"\x6a\x02\x00\x01")  # 3.1.1 forbids DUP on PUBREL
    assert isinstance(out[0], FramingAnomaly)
    out = decoder.feed(encode(Connect("c", 3), 3) + b"\x6a\x02\x00\x01")
    assert out == [Connect("c", 3), PubRel(1)]


def test_connection_decoder_applies_the_version_to_both_directions() -> None:
    conn = ConnectionDecoder()
    v5_connack = encode(ConnAck(False, 0, Properties.of(topic_alias_maximum=10)), 5)
    # Before the CONNECT the broker's side is read as 3.1.1: a v5 CONNACK does not fit.
    assert isinstance(conn.feed(B2C, v5_connack)[0], FramingAnomaly)
    assert not conn.version_known
    conn.feed(C2B, encode(Connect("c", 5), 5))
    assert conn.version == 5 and conn.version_known
    assert conn.stream(B2C).version == 5 and conn.stream(B2C).version_known
    assert conn.feed(B2C, v5_connack) == [ConnAck(False, 0, Properties.of(topic_alias_maximum=10))]


def test_connection_decoder_with_a_known_version() -> None:
    conn = ConnectionDecoder(5, version_known=True, lenient=False)
    assert conn.version_known and conn.version == 5
    assert conn.feed(B2C, b"\x40\x03\x00\x01\x10") == [PubAck(1, 0x10)]
    conn.set_version(4)
    with pytest.raises(MalformedPacket):
        conn.feed(C2B, b"\x40\x03\x00\x01\x10")
    assert conn.stream(C2B) is conn.c2b and conn.stream(B2C) is conn.b2c


# --- topic aliases ---------------------------------------------------------------------------

def _pub(topic: str, alias: int | None, payload: bytes = b"x") -> bytes:
    props = Properties.of(topic_alias=alias) if alias else Properties()
    return encode(Publish(topic, payload, properties=props), 5)


def test_topic_alias_is_resolved_per_direction() -> None:
    conn = ConnectionDecoder(5, version_known=True)
    assert conn.feed(C2B, _pub("a/b", 1))[0].topic == "a/b"  # type: ignore[union-attr]
    resolved = conn.feed(C2B, _pub("", 1))[0]
    assert isinstance(resolved, Publish)
    assert resolved.topic == "a/b" and resolved.properties.topic_alias == 1
    # The broker's aliases are its own [MQTT-3.3.2-10]: alias 1 means nothing b2c yet.
    (anomaly,) = conn.feed(B2C, _pub("", 1))
    assert isinstance(anomaly, FramingAnomaly)
    assert anomaly.kind == "protocol_error" and anomaly.reason_code == 0x82
    conn.feed(B2C, _pub("other", 1))
    assert conn.feed(B2C, _pub("", 1))[0].topic == "other"  # type: ignore[union-attr]
    assert conn.feed(C2B, _pub("", 1))[0].topic == "a/b"  # type: ignore[union-attr]


def test_topic_alias_can_be_redefined_and_a_connect_clears_them() -> None:
    decoder = StreamDecoder(5)
    decoder.feed(_pub("first", 7) + _pub("second", 7))
    assert decoder.feed(_pub("", 7))[0].topic == "second"  # type: ignore[union-attr]
    decoder.feed(encode(Connect("again", 5), 5))
    with pytest.raises(ProtocolError) as info:
        decoder.feed(_pub("", 7))
    assert info.value.offset is not None and "never set" in str(info.value)


def test_topic_alias_not_used_before_v5() -> None:
    # In 3.1.1 a zero-length topic is invalid whatever follows [MQTT-4.7.3-1].
    decoder = StreamDecoder(4, lenient=True)
    (anomaly,) = decoder.feed(b"\x30\x03\x00\x00x")
    assert isinstance(anomaly, FramingAnomaly) and anomaly.reason_code == 0x90


# --- strict and lenient ----------------------------------------------------------------------

def test_strict_error_offset_counts_the_whole_stream() -> None:
    decoder = StreamDecoder(4)
    decoder.feed(PING)
    decoder.feed(PING + b"\x40")
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(b"\x02\x00\x00")  # PUBACK with packet id 0 at stream offset 4
    assert info.value.offset == 6 and "at byte 6" in str(info.value)


def test_lenient_skips_a_bad_packet_by_its_length() -> None:
    decoder = StreamDecoder(4, lenient=True)
    out = decoder.feed(PING + b"\x36\x05\x00\x01a\x00\x01" + PING)
    assert out[0] == PingReq() and out[2] == PingReq()
    anomaly = out[1]
    assert isinstance(anomaly, FramingAnomaly)
    assert (anomaly.kind, anomaly.offset, anomaly.size, anomaly.packet_type,
            anomaly.reason_code) == ("invalid_qos", 2, 7, 3, 0x81)
    assert "PUBLISH" in anomaly.detail and "QoS 3" in anomaly.detail
    assert decoder.sizes == [2, 2]


def test_lenient_resynchronises_after_a_bad_length() -> None:
    garbage = b"\x30\xff\xff\xff\xff\x01\x02"
    decoder = StreamDecoder(4, lenient=True)
    out = decoder.feed(PING + garbage + encode(PubAck(5), 4) + PING)
    assert [p for p in out if not isinstance(p, FramingAnomaly)] == [PingReq(), PubAck(5),
                                                                      PingReq()]
    lost, skipped = [a for a in out if isinstance(a, FramingAnomaly)]
    assert lost.kind == "malformed" and lost.offset == 2 and lost.size == 0
    assert "resynchronising" in lost.detail
    assert skipped.kind == "resync" and (skipped.offset, skipped.size) == (2, len(garbage))


def test_resynchronisation_waits_for_a_plausible_incomplete_packet() -> None:
    decoder = StreamDecoder(4, lenient=True)
    publish = encode(Publish("t/1", b"p" * 50), 4)
    out = decoder.feed(b"\x30\xff\xff\xff\xff\x01" + publish[:10])
    assert [a.kind for a in out if isinstance(a, FramingAnomaly)] == ["malformed", "resync"]
    assert decoder.pending == 10  # the start of the PUBLISH is kept, not skipped
    assert decoder.feed(publish[10:] + PING) == [Publish("t/1", b"p" * 50), PingReq()]


def test_garbage_that_looks_like_a_long_header_does_not_hold_back_real_packets() -> None:
    # 0x70 0x61 would be a PUBCOMP of 97 bytes: impossible in 3.1.1 (remaining length 2).
    decoder = StreamDecoder(4, lenient=True, max_packet_size=12)
    out = decoder.feed(PING + b"\x30\x0b\x00\x01apayload!" + PING)
    assert [p for p in out if not isinstance(p, FramingAnomaly)] == [PingReq(), PingReq()]
    too_large = out[1]
    assert isinstance(too_large, FramingAnomaly) and too_large.kind == "packet_too_large"
    assert too_large.reason_code == 0x95


def test_strict_packet_too_large() -> None:
    decoder = StreamDecoder(4, max_packet_size=100)
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(PING + b"\x30\x80\x01")
    assert info.value.offset == 2 and info.value.reason_code == 0x95


def test_gap_drops_the_partial_packet_and_resynchronises() -> None:
    decoder = StreamDecoder(4, lenient=True)
    publish = encode(Publish("topic", b"payload", 1, packet_id=3), 4)
    assert decoder.feed(PING + publish[:6]) == [PingReq()]
    (cut,) = decoder.gap(100)
    assert (cut.kind, cut.offset, cut.size, cut.packet_type) == ("truncated", 2, 6, 3)
    assert "gap" in cut.detail
    # After the gap the bytes resume in the middle of something: the tail of another PUBLISH
    # payload, then whole packets.
    out = decoder.feed(b"load" + encode(PubAck(3), 4) + PING)
    assert [p for p in out if not isinstance(p, FramingAnomaly)] == [PubAck(3), PingReq()]
    (skip,) = [a for a in out if isinstance(a, FramingAnomaly)]
    assert skip.kind == "resync" and skip.offset == 2 + 6 + 100 and skip.size == 4
    assert decoder.offset == 2 + 6 + 100 + 4 + 4 + 2


def test_gap_between_packets_reports_nothing() -> None:
    decoder = StreamDecoder(4, lenient=True)
    decoder.feed(PING)
    assert decoder.gap(10) == []
    assert decoder.feed(PING) == [PingReq()]
    assert decoder.offset == 14


def test_finish_reports_an_incomplete_packet() -> None:
    decoder = StreamDecoder(4, lenient=True)
    decoder.feed(PING + b"\x32\x10\x00")
    (end,) = decoder.finish()
    assert (end.kind, end.offset, end.size, end.packet_type) == ("truncated", 2, 3, 3)
    assert "PUBLISH" in end.detail and "of 18" in end.detail
    assert decoder.finish() == [] and decoder.pending == 0


def test_finish_while_resynchronising_reports_skipped_bytes() -> None:
    decoder = StreamDecoder(4, lenient=True)
    decoder.gap()
    decoder.feed(b"\x32\x10\x00\x01")  # could still become a PUBLISH: waiting for it
    (end,) = decoder.finish()
    assert end.kind == "resync" and end.size == 4


def test_empty_feeds_are_harmless() -> None:
    decoder = StreamDecoder(4)
    assert decoder.feed(b"") == [] and decoder.feed(b"\xc0") == [] and decoder.feed(b"") == []
    assert decoder.feed(b"\x00") == [PingReq()]


# --- real captures ---------------------------------------------------------------------------

def _captures() -> list[tuple[Path, tuple[int, ...], str]]:
    index = json.loads((PROJECT_ROOT / "captures" / "captures.json").read_text())
    out = [(PROJECT_ROOT / "captures" / e["file"], tuple(e["ports"]),
            "tls" if e.get("tls") else "peers") for e in index]
    out += [(p, (1883,), "shared") for p in sorted(shared_captures().glob("*.pcap"))]
    return out


def decode_capture(path: Path, ports: tuple[int, ...]) -> dict[tuple[int, int], DecodeResult]:
    """Every packet and anomaly by (frame, index within the frame), through ConnectionDecoder."""
    conns: dict[int, ConnectionDecoder] = {}
    found: dict[tuple[int, int], DecodeResult] = {}
    for record in CapturePipeline(path, ports=ports):
        if type(record) is not StreamData:
            continue
        conn = conns.setdefault(id(record.flow), ConnectionDecoder())
        for i, item in enumerate(conn.feed(record.direction, record.data)):
            found[(record.frame, i)] = item
    return found


CAPTURES = _captures()


@pytest.mark.parametrize(("path", "ports", "folder"), CAPTURES,
                         ids=[path.stem for path, _, _ in CAPTURES])
def test_capture_streams_give_tsharks_packets(path: Path, ports: tuple[int, ...],
                                               folder: str) -> None:
    found = decode_capture(path, ports)
    if folder == "tls":
        # tshark decrypted it with the capture's key log (its vectors are in peers/); without
        # the keys qosinspect sees an encrypted stream and must not make packets of it.
        assert not found
        return
    vectors = [v for v in load_peer_vectors(folder) if v["file"] == path.stem]
    assert vectors
    for v in vectors:
        ours = found[(v["frame"], v["pdu_index"])]
        data = bytes.fromhex(v["hex"])
        if isinstance(ours, FramingAnomaly):
            assert v["tshark_malformed"] or v["tshark"]["type"] == "RESERVED0" or (
                v["tshark"]["qos"] == 3), v["name"]
            assert ours.size == len(data)
            continue
        shown = v["tshark"]
        if isinstance(ours, Publish) and shown.get("topic_generated"):
            # tshark resolved the alias; so did the stream decoder, per direction
            assert ours.topic == shown["topic"] and shown["topic_length"] == 0
            ours = ours._replace(topic="")
        version = v["version"] or 4
        if isinstance(ours, ConnAck) and len(data) == 4 and version >= 5:
            # a 3.1.1-only server's CONNACK to an MQTT 5 client (Wireshark: malformed): it is
            # a 3.1.1 CONNACK, and encodes back as one
            assert v["tshark_malformed"] and ours.reason_code == 1, v["name"]
            version = 4
        assert encode(ours, version) == data, v["name"]


def test_a_capture_with_aliases_exercises_resolution() -> None:
    vectors = load_peer_vectors("peers")
    assert sum(1 for v in vectors if v["tshark"].get("topic_generated")) >= 1


def test_ping_without_connect_is_decoded_midstream() -> None:
    path = shared_captures() / "suricata-verify__mqtt-ping.pcap"
    found = decode_capture(path, (1883,))
    assert sorted(found.values(), key=repr) == [PingReq(), PingResp()]


def test_broken_connect_still_sets_the_version_for_an_observer() -> None:
    """suricata-verify mqtt5-excessiveproplen: the CONNECT's property length runs past the
    packet, yet it says MQTT 5, and the CONNACK that follows is an MQTT 5 CONNACK."""
    conn = ConnectionDecoder()
    broken = b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x7f\x00\x01c\x00\x00"
    (anomaly,) = conn.feed(C2B, broken)
    assert isinstance(anomaly, FramingAnomaly) and anomaly.packet_type == 1
    assert conn.version == 5 and conn.version_known
    assert conn.feed(B2C, b"\x20\x03\x00\x00\x00") == [ConnAck()]


@pytest.mark.slow
def test_peer_vectors_are_up_to_date_with_the_captures() -> None:
    """tests/vectors/make_peer_vectors.py --check: the JSON files are what tshark says now."""
    require_tool("tshark")
    script = PROJECT_ROOT / "tests" / "vectors" / "make_peer_vectors.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


# --- the fast paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", [3, 4, 5])
def test_fast_paths_agree_with_the_full_decoder(version: int) -> None:
    """The hot loop builds short acks and PUBLISHes to known topics itself; whatever it builds
    must be what decode() gives for the same bytes."""
    props = Properties.of(user_property=[("k", "v")]) if version == 5 else Properties()
    packets: list[Any] = []
    for i in range(1, 40):
        qos = i % 3
        packets += [
            Publish(f"t/{i % 4}", bytes([i]) * i, qos, qos > 0 and i % 2 == 0, i % 5 == 0,
                    i if qos else None),
            Publish(f"t/{i % 4}", b"p", 1, packet_id=i, properties=props),
            PubAck(i), PubRec(i), PubRel(i), PubComp(i), PingReq(),
        ]
    wire = [encode(p, version) for p in packets]
    decoder = StreamDecoder(version)
    assert decoder.feed(b"".join(wire)) == [decode(w, version)[0] for w in wire]  # type: ignore[index]
    assert decoder.sizes == [len(w) for w in wire]


@pytest.mark.parametrize(("version", "bad"), [
    (4, b"\x30\x03\x00\x02a"),       # topic 'ab' would run into the next packet's 'b' (0x62)
    (4, b"\x32\x05\x00\x02ab\x00"),  # QoS 1: no room for the packet identifier
    (5, b"\x30\x04\x00\x02ab"),      # MQTT 5: no room for the property length
])
def test_a_known_topic_running_past_its_packet_is_not_taken(version: int, bad: bytes) -> None:
    decoder = StreamDecoder(version, lenient=True)
    decoder.feed(encode(Publish("ab", b"x"), version))  # the topic is now known to the stream
    out = decoder.feed(bad + b"\x62\x02\x00\x01")
    assert isinstance(out[0], FramingAnomaly) and out[0].reason_code == 0x81
    assert out[1:] == [PubRel(1)]

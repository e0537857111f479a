"""Error vectors (tests/vectors/spec/errors.json): bytes the codec must refuse, and exactly how.

Each vector names the error class, the reason code a peer would be sent (0x81 malformed, 0x82
protocol error, 0x8F/0x90 bad topic filter/name, 0x95 packet too large, 0x84/0x01 unsupported
protocol version) and the byte offset of the problem. The same bytes are then sent through the
stream decoder: strict mode raises the same error with the offset counted from the start of the
stream; lenient mode turns it into a FramingAnomaly and goes on with the next packet.
"""

from __future__ import annotations

import pytest

from qosinspect.errors import (
    LocalProtocolError,
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    QosinspectError,
    RemoteProtocolError,
    TopicFilterInvalid,
    TopicNameInvalid,
    UnsupportedProtocolVersion,
)
from qosinspect.mqtt import NEED_DATA, FramingAnomaly, PingReq, StreamDecoder, decode
from qosinspect.mqtt.codec import MAX_PACKET_SIZE, parse_fixed_header
from qosinspect.mqtt.wire import MAX_VARINT, encode_varint, read_varint

from ._vectors import SpecVector, spec_errors

ERRORS = spec_errors()
PING = b"\xc0\x00"


def _ids(v: SpecVector) -> str:
    return v.id


def _expected(v: SpecVector) -> tuple[str, int, int]:
    assert v.error is not None
    return v.error["class"], v.error["reason_code"], v.error["offset"]


def _decode_kwargs(v: SpecVector) -> dict[str, int]:
    return {"max_packet_size": v.max_packet_size} if v.max_packet_size else {}


@pytest.mark.parametrize("vector", ERRORS, ids=_ids)
def test_decode_raises_the_error_with_reason_code_and_offset(vector: SpecVector) -> None:
    with pytest.raises(MQTTError) as info:
        decode(vector.data, vector.version, **_decode_kwargs(vector))
    exc = info.value
    assert (type(exc).__name__, exc.reason_code, exc.offset) == _expected(vector)
    assert f"at byte {exc.offset}" in str(exc)
    assert exc.packet_type == vector.data[0] >> 4


@pytest.mark.parametrize("vector", ERRORS, ids=_ids)
def test_strict_stream_raises_with_the_stream_offset(vector: SpecVector) -> None:
    decoder = StreamDecoder(vector.version, **_decode_kwargs(vector))
    assert decoder.feed(PING * 3) == [PingReq()] * 3
    with pytest.raises(MQTTError) as info:
        decoder.feed(vector.data + PING)
    cls, reason, offset = _expected(vector)
    assert (type(info.value).__name__, info.value.reason_code, info.value.offset) == (
        cls, reason, offset + 6)
    # An endpoint's decoder is finished after the first error: it says so again.
    with pytest.raises(MQTTError) as again:
        decoder.feed(PING)
    assert again.value is info.value


@pytest.mark.parametrize("vector", ERRORS, ids=_ids)
def test_lenient_stream_reports_it_and_goes_on(vector: SpecVector) -> None:
    decoder = StreamDecoder(vector.version, lenient=True, **_decode_kwargs(vector))
    out = decoder.feed(PING + vector.data + PING)
    anomalies = [r for r in out if isinstance(r, FramingAnomaly)]
    packets = [r for r in out if not isinstance(r, FramingAnomaly)]
    assert packets == [PingReq(), PingReq()]
    assert anomalies[0].offset == 2
    assert anomalies[0].reason_code == _expected(vector)[1]
    assert anomalies[0].packet_type == vector.data[0] >> 4
    # Every byte is either in a packet or in an anomaly, once: nothing invented, nothing lost.
    assert sum(decoder.sizes) + sum(a.size for a in anomalies) == len(vector.data) + 4
    assert decoder.finish() == []


def test_error_classes_carry_their_reason_codes() -> None:
    assert {cls: cls.reason_code for cls in (
        MalformedPacket, ProtocolError, PacketTooLarge, UnsupportedProtocolVersion,
        TopicNameInvalid, TopicFilterInvalid)} == {
        MalformedPacket: 0x81, ProtocolError: 0x82, PacketTooLarge: 0x95,
        UnsupportedProtocolVersion: 0x84, TopicNameInvalid: 0x90, TopicFilterInvalid: 0x8F}
    for cls in (MalformedPacket, ProtocolError, PacketTooLarge, UnsupportedProtocolVersion,
                TopicNameInvalid, TopicFilterInvalid):
        assert issubclass(cls, MQTTError) and issubclass(cls, QosinspectError)
    remote = RemoteProtocolError(ProtocolError("x", offset=3))
    assert remote.reason_code == 0x82 and "at byte 3" in str(remote)


def test_local_and_remote_errors_are_protocol_errors() -> None:
    """As in h11: ``except ProtocolError`` catches a breach whoever made it (issue 10); the
    remote one carries the reason code, offset and packet type of the codec error it wraps."""
    for exc in (LocalProtocolError("QoS 3 does not exist"),
                RemoteProtocolError(MalformedPacket("bad length", offset=1, packet_type=3))):
        with pytest.raises(ProtocolError):
            raise exc
        assert isinstance(exc, MQTTError) and isinstance(exc, QosinspectError)
    remote = RemoteProtocolError(MalformedPacket("bad length", offset=1, packet_type=3))
    assert (remote.reason_code, remote.offset, remote.packet_type, remote.message) == (
        0x81, 1, 3, "bad length")
    assert str(remote) == str(remote.error) == "bad length at byte 1"
    local = LocalProtocolError("QoS 3 does not exist")
    assert str(local) == "QoS 3 does not exist" and local.offset is None


def test_every_kind_of_error_the_issue_names_has_a_vector() -> None:
    names = " ".join(v.name for v in ERRORS)
    for kind in ("reserved-flags", "qos3", "remaining-length-five-bytes", "non-minimal",
                 "maximum-packet-size", "invalid-utf8", "u0000", "packet-id-0",
                 "topic-name-plus", "topic-name-hash", "hash-not-last", "shared-subscription",
                 "not-allowed", "two-", "trailing"):
        assert kind in names, kind
    assert {v.error["class"] for v in ERRORS if v.error} == {
        "MalformedPacket", "ProtocolError", "PacketTooLarge", "TopicNameInvalid",
        "TopicFilterInvalid", "UnsupportedProtocolVersion"}


# --- limits -------------------------------------------------------------------------------------

def test_maximum_packet_size_is_inclusive() -> None:
    packet = b"\x30\x0b\x00\x01a" + b"payload!"  # 13 bytes
    assert decode(packet, 4, max_packet_size=13) is not NEED_DATA
    with pytest.raises(PacketTooLarge) as info:
        decode(packet, 4, max_packet_size=12)
    assert info.value.reason_code == 0x95 and info.value.offset == 0


def test_packet_too_large_is_known_from_the_header_in_a_stream() -> None:
    decoder = StreamDecoder(5, max_packet_size=1000)
    assert decoder.feed(PING) == [PingReq()]
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(b"\x30\xe9\x07")  # remaining length 1001: no need to wait for it
    assert info.value.offset == 2


def test_largest_remaining_length_is_accepted_and_waits_for_data() -> None:
    header = b"\x30\xff\xff\xff\x7f"  # 268,435,455: the largest the protocol can express
    assert parse_fixed_header(header, 0, len(header)) == (0x30, MAX_VARINT, 5)
    assert decode(header + b"\x00\x01a", 4) is NEED_DATA
    assert MAX_PACKET_SIZE == 1 + 4 + MAX_VARINT


@pytest.mark.parametrize(("value", "wire"), [
    # MQTT 5.0 1.5.5 / 3.1.1 2.2.3 table: the boundaries of each size.
    (0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"),
    (2_097_151, "ffff7f"), (2_097_152, "80808001"), (268_435_455, "ffffff7f"),
])
def test_variable_byte_integer_table(value: int, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode_varint(value) == data
    assert read_varint(data, 0, len(data)) == (value, len(data))
    assert parse_fixed_header(b"\x30" + data, 0, len(data) + 1) == (0x30, value, len(data) + 1)


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_variable_byte_integer_out_of_range_cannot_be_encoded(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


@pytest.mark.parametrize(("wire", "offset"), [
    ("80", 0), ("ff", 0),              # cut short by the end of the packet
    ("8000", 0), ("ff8000", 0),        # not the shortest form [MQTT-1.5.5-1]
    ("ffffffff7f", 0),                 # five bytes
])
def test_variable_byte_integer_errors(wire: str, offset: int) -> None:
    data = b"\x00" + bytes.fromhex(wire)
    with pytest.raises(MalformedPacket) as info:
        read_varint(data, 1, len(data))
    assert info.value.offset == offset + 1


def test_short_input_is_never_an_error() -> None:
    for data in (b"", b"\x30", b"\x30\xff", b"\x30\xff\xff", b"\x30\xff\xff\xff",
                 b"\x00", b"\xf0", b"\x30\x05\x00\x03a/"):
        assert decode(data, 4) is NEED_DATA

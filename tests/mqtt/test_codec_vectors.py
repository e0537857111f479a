"""The hand-written specification vectors (tests/vectors/spec/packets-*.json), checked both ways.

Decode equals the fields, encode equals the bytes (unless the vector says its bytes are not the
canonical encoding, and why); every strict prefix asks for more data; the JSON form round-trips;
and the vector files together cover every packet type of every version, every MQTT 5 property and
every reason code.
"""

from __future__ import annotations

import pytest

from qosinspect.mqtt import (
    NEED_DATA,
    ConnAckReturnCode,
    ConnectReason,
    DisconnectReason,
    PacketType,
    PubAckReason,
    Publish,
    SubAckReason,
    SubAckReturnCode,
    UnsubAckReason,
    decode,
    encode,
    packet_type_of,
)
from qosinspect.mqtt.jsonform import packet_from_dict, packet_to_dict
from qosinspect.mqtt.properties import PROPERTY_SPECS

from ._vectors import SpecVector, load_spec, parse_hex, spec_packets

PACKETS = spec_packets()
SMALL = [v for v in PACKETS if len(v.data) < 1024]


def _ids(v: SpecVector) -> str:
    return v.id


def remaining_length(data: bytes) -> tuple[int, int]:
    """(remaining length, header size), read here independently of the codec."""
    value, shift, i = 0, 0, 1
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7


# --- the vector files themselves ---------------------------------------------------------------

def test_hex_notation() -> None:
    assert parse_hex("10 0e | 0004") == bytes.fromhex("100e0004")
    assert parse_hex(["0004 'MQTT'   # protocol name", "ab*3"]) == b"\x00\x04MQTT\xab\xab\xab"
    assert parse_hex(["'a/#' 00  # the # inside quotes is text"]) == b"a/#\x00"
    assert parse_hex("'caf\u00e9'") == b"caf\xc3\xa9"
    with pytest.raises(ValueError):
        parse_hex("abc")


@pytest.mark.parametrize("vector", PACKETS, ids=_ids)
def test_vector_bytes_are_one_whole_packet(vector: SpecVector) -> None:
    """The remaining length written by hand matches the bytes written by hand."""
    length, header = remaining_length(vector.data)
    assert header + length == len(vector.data)


def test_names_are_unique() -> None:
    ids = [v.id for v in load_spec()]
    assert len(ids) == len(set(ids))


def test_every_packet_type_in_every_version() -> None:
    covered = {(v.version, packet_type_of(v.packet)) for v in PACKETS if v.packet is not None}
    for version in (3, 4, 5):
        for ptype in PacketType:
            if ptype is PacketType.RESERVED or (ptype is PacketType.AUTH and version < 5):
                continue
            assert (version, ptype) in covered, f"no vector for {ptype.name} in version {version}"


def test_every_property_appears_in_a_vector() -> None:
    seen: set[int] = set()
    for v in PACKETS:
        packet = v.packet
        assert packet is not None
        for props in (getattr(packet, "properties", None),
                      getattr(getattr(packet, "will", None), "properties", None)):
            if props is not None:
                seen.update(pid for pid, _ in props.items)
    assert seen == set(PROPERTY_SPECS)


@pytest.mark.parametrize(("ptype", "field", "enum"), [
    (PacketType.SUBACK, "reason_codes", SubAckReason),
    (PacketType.UNSUBACK, "reason_codes", UnsubAckReason),
])
def test_every_v5_list_reason_code_appears(ptype: PacketType, field: str, enum: type) -> None:
    seen = {c for v in PACKETS if v.version == 5 and packet_type_of(v.packet) is ptype  # type: ignore[arg-type]
            for c in getattr(v.packet, field)}
    assert seen == {int(m) for m in enum}  # type: ignore[attr-defined]


def test_every_v311_connack_return_code_and_suback_code_appears() -> None:
    connack = {v.packet.reason_code for v in PACKETS  # type: ignore[union-attr]
               if v.version == 4 and packet_type_of(v.packet) is PacketType.CONNACK}  # type: ignore[arg-type]
    assert connack == {int(m) for m in ConnAckReturnCode}
    suback = {c for v in PACKETS if v.version == 4 and packet_type_of(v.packet) is PacketType.SUBACK  # type: ignore[arg-type]
              for c in v.packet.reason_codes}  # type: ignore[union-attr]
    assert suback == {int(m) for m in SubAckReturnCode}


def test_short_forms_of_v5_acks_are_covered() -> None:
    """Remaining length 2 and 3 for PUBACK (the rest in test_reason_codes), 0 and 1 for
    DISCONNECT, 0 for AUTH."""
    lengths = {(v.data[0] >> 4, remaining_length(v.data)[0]) for v in PACKETS if v.version == 5}
    for wanted in [(4, 2), (4, 3), (5, 2), (5, 3), (6, 2), (6, 3), (7, 2), (14, 0), (14, 1),
                   (15, 0)]:
        assert wanted in lengths


# --- both ways -----------------------------------------------------------------------------

@pytest.mark.parametrize("vector", PACKETS, ids=_ids)
def test_decode_gives_the_fields(vector: SpecVector) -> None:
    result = decode(vector.data, vector.version)
    assert result is not NEED_DATA
    packet, size = result  # type: ignore[misc]
    assert size == len(vector.data)
    assert packet == vector.packet
    assert packet_to_dict(packet) == packet_to_dict(vector.packet)  # type: ignore[arg-type]


@pytest.mark.parametrize("vector", PACKETS, ids=_ids)
def test_decode_takes_any_buffer_and_ignores_what_follows(vector: SpecVector) -> None:
    tail = b"\xc0\x00\xff"
    for buf in (bytearray(vector.data + tail), memoryview(vector.data + tail),
                memoryview(b"xx" + vector.data)[2:]):
        result = decode(buf, vector.version)
        assert result == (vector.packet, len(vector.data))


@pytest.mark.parametrize("vector", PACKETS, ids=_ids)
def test_encode_gives_the_bytes(vector: SpecVector) -> None:
    assert vector.packet is not None
    data = encode(vector.packet, vector.version)
    if vector.canonical:
        assert data == vector.data
    else:
        assert vector.raw.get("why"), "a non-canonical vector must say why"
        assert data != vector.data
        assert decode(data, vector.version) == (vector.packet, len(data))


@pytest.mark.parametrize("vector", PACKETS, ids=_ids)
def test_json_form_round_trips(vector: SpecVector) -> None:
    assert vector.packet is not None
    assert packet_from_dict(packet_to_dict(vector.packet)) == vector.packet


@pytest.mark.parametrize("vector", SMALL, ids=_ids)
def test_every_strict_prefix_needs_data(vector: SpecVector) -> None:
    for cut in range(len(vector.data)):
        assert decode(vector.data[:cut], vector.version) is NEED_DATA
        assert decode(memoryview(vector.data)[:cut], vector.version) is NEED_DATA


def test_prefixes_of_the_16k_packet_need_data() -> None:
    (big,) = [v for v in PACKETS if len(v.data) > 16384]
    for cut in [*range(0, 64), *range(len(big.data) - 64, len(big.data))]:
        assert decode(big.data[:cut], 4) is NEED_DATA
    assert decode(big.data, 4) == (big.packet, 16388)


def test_reason_codes_decode_as_their_packets_enum() -> None:
    """Reason codes come back as the IntEnum of their packet type, not as bare ints."""
    by_name = {v.name: v for v in PACKETS if v.version == 5}
    puback = decode(by_name["puback-short-form-length-3"].data, 5)
    assert puback is not NEED_DATA
    assert type(puback[0].reason_code) is PubAckReason  # type: ignore[index,union-attr]
    assert puback[0].reason_code is PubAckReason.NO_MATCHING_SUBSCRIBERS  # type: ignore[index,union-attr]
    connack = decode(by_name["connack-use-another-server"].data, 5)
    assert connack[0].reason_code is ConnectReason.USE_ANOTHER_SERVER  # type: ignore[index,union-attr]
    disconnect = decode(by_name["disconnect-with-properties"].data, 5)
    assert disconnect[0].reason_code is DisconnectReason.USE_ANOTHER_SERVER  # type: ignore[index,union-attr]


def test_codec_alone_leaves_an_aliased_topic_empty() -> None:
    (vector,) = [v for v in PACKETS if v.name == "publish-topic-alias-empty-topic"]
    packet, _ = decode(vector.data, 5)  # type: ignore[misc]
    assert isinstance(packet, Publish)
    assert packet.topic == "" and packet.properties.topic_alias == 3

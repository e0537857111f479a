"""Reason codes per packet type: MQTT 5.0 table 2-6 (section 2.4), written out again here, and the
MQTT 3.1/3.1.1 CONNACK and SUBACK return codes. Each code round-trips through its own packet in
the short forms the specification allows; a code of another packet type is malformed."""

from __future__ import annotations

from typing import Any

import pytest

from qosinspect.errors import MalformedPacket
from qosinspect.mqtt import (
    AuthReason,
    ConnAck,
    ConnAckReturnCode,
    ConnectReason,
    Disconnect,
    DisconnectReason,
    PubAck,
    PubAckReason,
    PubComp,
    PubCompReason,
    PubRec,
    PubRecReason,
    PubRel,
    PubRelReason,
    SubAck,
    SubAckReason,
    SubAckReturnCode,
    UnsubAck,
    UnsubAckReason,
    decode,
    encode,
)
from qosinspect.mqtt.packets import Auth

# code: packets that may carry it (MQTT 5.0 table 2-6). For 0x00 the name differs by packet
# (Success, Normal disconnection, Granted QoS 0) but the value is the same.
TABLE_2_6: dict[int, set[str]] = {
    0x00: {"CONNACK", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "UNSUBACK", "AUTH", "DISCONNECT",
           "SUBACK"},
    0x01: {"SUBACK"}, 0x02: {"SUBACK"}, 0x04: {"DISCONNECT"},
    0x10: {"PUBACK", "PUBREC"}, 0x11: {"UNSUBACK"}, 0x18: {"AUTH"}, 0x19: {"AUTH"},
    0x80: {"CONNACK", "PUBACK", "PUBREC", "SUBACK", "UNSUBACK", "DISCONNECT"},
    0x81: {"CONNACK", "DISCONNECT"}, 0x82: {"CONNACK", "DISCONNECT"},
    0x83: {"CONNACK", "PUBACK", "PUBREC", "SUBACK", "UNSUBACK", "DISCONNECT"},
    0x84: {"CONNACK"}, 0x85: {"CONNACK"}, 0x86: {"CONNACK"},
    0x87: {"CONNACK", "PUBACK", "PUBREC", "SUBACK", "UNSUBACK", "DISCONNECT"},
    0x88: {"CONNACK"}, 0x89: {"CONNACK", "DISCONNECT"}, 0x8A: {"CONNACK"},
    0x8B: {"DISCONNECT"}, 0x8C: {"CONNACK", "DISCONNECT"}, 0x8D: {"DISCONNECT"},
    0x8E: {"DISCONNECT"}, 0x8F: {"SUBACK", "UNSUBACK", "DISCONNECT"},
    0x90: {"CONNACK", "PUBACK", "PUBREC", "DISCONNECT"},
    0x91: {"PUBACK", "PUBREC", "SUBACK", "UNSUBACK"}, 0x92: {"PUBREL", "PUBCOMP"},
    0x93: {"DISCONNECT"}, 0x94: {"DISCONNECT"}, 0x95: {"CONNACK", "DISCONNECT"},
    0x96: {"DISCONNECT"}, 0x97: {"CONNACK", "PUBACK", "PUBREC", "SUBACK", "DISCONNECT"},
    0x98: {"DISCONNECT"}, 0x99: {"CONNACK", "PUBACK", "PUBREC", "DISCONNECT"},
    0x9A: {"CONNACK", "DISCONNECT"}, 0x9B: {"CONNACK", "DISCONNECT"},
    0x9C: {"CONNACK", "DISCONNECT"}, 0x9D: {"CONNACK", "DISCONNECT"},
    0x9E: {"SUBACK", "DISCONNECT"}, 0x9F: {"CONNACK", "DISCONNECT"}, 0xA0: {"DISCONNECT"},
    0xA1: {"SUBACK", "DISCONNECT"}, 0xA2: {"SUBACK", "DISCONNECT"},
}
ENUMS: dict[str, Any] = {
    "CONNACK": ConnectReason, "PUBACK": PubAckReason, "PUBREC": PubRecReason,
    "PUBREL": PubRelReason, "PUBCOMP": PubCompReason, "SUBACK": SubAckReason,
    "UNSUBACK": UnsubAckReason, "DISCONNECT": DisconnectReason, "AUTH": AuthReason,
}


def build(name: str, code: int) -> Any:
    """The packet of type ``name`` carrying ``code`` in its shortest form."""
    return {
        "CONNACK": lambda: ConnAck(False, code), "PUBACK": lambda: PubAck(9, code),
        "PUBREC": lambda: PubRec(9, code), "PUBREL": lambda: PubRel(9, code),
        "PUBCOMP": lambda: PubComp(9, code), "SUBACK": lambda: SubAck(9, (code,)),
        "UNSUBACK": lambda: UnsubAck(9, (code,)), "DISCONNECT": lambda: Disconnect(code),
        "AUTH": lambda: Auth(code),
    }[name]()


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_is_table_2_6(name: str) -> None:
    wanted = {code for code, packets in TABLE_2_6.items() if name in packets}
    assert {int(m) for m in ENUMS[name]} == wanted


CASES = [(name, code) for code, packets in sorted(TABLE_2_6.items()) for name in sorted(packets)]
WRONG = [(name, code) for code, packets in sorted(TABLE_2_6.items()) for name in sorted(ENUMS)
         if name not in packets]


@pytest.mark.parametrize(("name", "code"), CASES, ids=[f"{n}-{c:#04x}" for n, c in CASES])
def test_reason_code_round_trips_in_its_packet(name: str, code: int) -> None:
    packet = build(name, code)
    data = encode(packet, 5)
    decoded, size = decode(data, 5)  # type: ignore[misc]
    assert decoded == packet and size == len(data)
    value = decoded.reason_codes[0] if name in ("SUBACK", "UNSUBACK") else decoded.reason_code
    assert type(value) is ENUMS[name] and value == code
    if name in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP"):
        # short forms: remaining length 2 for Success, 3 for any other code [3.4.2.1]
        assert data[1] == (2 if code == 0 else 3)
    if name in ("DISCONNECT", "AUTH"):
        assert data[1] == (0 if code == 0 else 1 if name == "DISCONNECT" else 2)


@pytest.mark.parametrize(("name", "code"), WRONG, ids=[f"{n}-{c:#04x}" for n, c in WRONG])
def test_reason_code_of_another_packet_is_malformed(name: str, code: int) -> None:
    data = bytearray(encode(build(name, 0x00 if name != "AUTH" else 0x18), 5))
    at = {"CONNACK": 3, "PUBACK": 4, "PUBREC": 4, "PUBREL": 4, "PUBCOMP": 4, "SUBACK": 5,
          "UNSUBACK": 5, "DISCONNECT": 2, "AUTH": 2}[name]
    if name in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP"):
        data[1:] = bytes((3,)) + data[2:4] + b"\x00"
    elif name == "DISCONNECT":
        data[:] = b"\xe0\x01\x00"
    data[at] = code
    with pytest.raises(MalformedPacket) as info:
        decode(bytes(data), 5)
    assert info.value.offset == at


@pytest.mark.parametrize("version", [3, 4])
def test_v3_return_codes(version: int) -> None:
    # MQTT 3.1.1 table 3.1 (CONNACK) and 3.9.3 (SUBACK); MQTT 3.1 has the same values.
    assert {int(m) for m in ConnAckReturnCode} == {0, 1, 2, 3, 4, 5}
    assert {int(m) for m in SubAckReturnCode} == {0, 1, 2, 0x80}
    for code in range(256):
        connack = bytes((0x20, 2, 0, code))
        suback = bytes((0x90, 3, 0, 1, code))
        if code <= 5:
            assert decode(connack, version)[0] == ConnAck(False, code)  # type: ignore[index]
        else:
            with pytest.raises(MalformedPacket):
                decode(connack, version)
        if code in (0, 1, 2, 0x80):
            assert decode(suback, version)[0] == SubAck(1, (code,))  # type: ignore[index]
        else:
            with pytest.raises(MalformedPacket):
                decode(suback, version)


def test_v3_acks_carry_no_reason_code() -> None:
    """A 3.1.x PUBACK is exactly 2 bytes of packet id; a v5-style reason byte is malformed."""
    with pytest.raises(MalformedPacket):
        decode(b"\x40\x03\x00\x01\x10", 4)
    assert decode(b"\x40\x03\x00\x01\x10", 5) == (PubAck(1, 0x10), 5)

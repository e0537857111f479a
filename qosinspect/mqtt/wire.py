"""Wire primitives of MQTT (section 1.5): integers, variable byte integers, strings, binary data,
and property lists.

Readers take ``(buf, pos, end)`` and return ``(value, new_pos)``; they never read past ``end``
(the end of the packet), so a length field that claims more than the packet holds is malformed
rather than a read into the next packet. Offsets in errors are positions in ``buf``.

Normative rules decided here:
- A Variable Byte Integer has at most 4 bytes [MQTT-1.5.5] and MUST use the minimum number of
  bytes [MQTT-1.5.5-1]; anything else is malformed.
- UTF-8 strings MUST be well-formed UTF-8 without surrogates [MQTT-1.5.4-1] and MUST NOT
  contain U+0000 [MQTT-1.5.4-2]; lengths are two-byte big-endian, max 65,535 bytes.
"""

from __future__ import annotations

from typing import Any

from ..errors import LocalProtocolError, MalformedPacket, ProtocolError
from .properties import (
    NO_PROPERTIES,
    PROPERTY_SPECS,
    Properties,
    PropertyType,
    PropertyValue,
)

__all__ = [
    "MAX_VARINT",
    "check_property",
    "encode_binary",
    "encode_properties",
    "encode_utf8",
    "encode_varint",
    "read_binary",
    "read_properties",
    "read_u16",
    "read_u32",
    "read_utf8",
    "read_varint",
]

MAX_VARINT = 268_435_455

Buffer = bytes | bytearray | memoryview


def read_varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer at ``pos``. Raises MalformedPacket if cut short by ``end``."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet",
                                  offset=start)
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and pos - start > 1:
                raise MalformedPacket("variable byte integer not in its shortest form "
                                      "[MQTT-1.5.5-1]", offset=start)
            return value, pos
        shift += 7
        if shift >= 28:
            raise MalformedPacket("variable byte integer longer than 4 bytes", offset=start)


def encode_varint(value: int) -> bytes:
    if value < 128:
        if value < 0:
            raise ValueError("variable byte integer cannot be negative")
        return bytes((value,))
    if value > MAX_VARINT:
        raise ValueError(f"{value} exceeds the variable byte integer maximum {MAX_VARINT}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_u16(buf: Any, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise MalformedPacket("two-byte integer runs past the end of the packet", offset=pos)
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def read_u32(buf: Any, pos: int, end: int) -> tuple[int, int]:
    if pos + 4 > end:
        raise MalformedPacket("four-byte integer runs past the end of the packet", offset=pos)
    return int.from_bytes(buf[pos:pos + 4], "big"), pos + 4


def read_utf8(buf: Any, pos: int, end: int, what: str = "string") -> tuple[str, int]:
    if pos + 2 > end:
        raise MalformedPacket(f"{what}: length runs past the end of the packet", offset=pos)
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MalformedPacket(f"{what}: length {stop - pos - 2} runs past the end of the packet",
                              offset=pos)
    try:
        text = str(buf[pos + 2:stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what}: invalid UTF-8 [MQTT-1.5.4-1] ({exc.reason})",
                              offset=pos + 2 + exc.start) from None
    if "\x00" in text:
        raise MalformedPacket(f"{what}: contains U+0000 [MQTT-1.5.4-2]",
                              offset=pos + 2 + text.index("\x00"))
    return text, stop


def read_binary(buf: Any, pos: int, end: int, what: str = "binary data") -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket(f"{what}: length runs past the end of the packet", offset=pos)
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MalformedPacket(f"{what}: length {stop - pos - 2} runs past the end of the packet",
                              offset=pos)
    return bytes(buf[pos + 2:stop]), stop


def encode_utf8(text: str, what: str = "string") -> bytes:
    raw = text.encode("utf-8")  # raises on lone surrogates: they cannot be sent
    if len(raw) > 0xFFFF:
        raise ValueError(f"{what} is {len(raw)} bytes; MQTT strings hold at most 65535")
    if "\x00" in text:
        raise ValueError(f"{what} contains U+0000 [MQTT-1.5.4-2]")
    return len(raw).to_bytes(2, "big") + raw


def encode_binary(data: bytes, what: str = "binary data") -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"{what} is {len(data)} bytes; MQTT binary data holds at most 65535")
    return len(data).to_bytes(2, "big") + bytes(data)


def read_properties(buf: Any, pos: int, end: int, context: int) -> tuple[Properties, int]:
    """The property length and list at ``pos``, checked against the packet type ``context``."""
    at = pos
    length, pos = read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket(f"property length {length} runs past the end of the packet",
                              offset=at)
    if length == 0:
        return NO_PROPERTIES, pos
    items: list[tuple[int, PropertyValue]] = []
    seen: set[int] = set()
    while pos < stop:
        at = pos
        pid, pos = read_varint(buf, pos, stop)
        spec = PROPERTY_SPECS.get(pid)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{pid:02x}", offset=at)
        if context not in spec.allowed_in:
            # "An Identifier which is not valid for its packet type ... is a Malformed Packet"
            # (MQTT 5.0 2.2.2.2), unlike a duplicate, which is a Protocol Error.
            raise MalformedPacket(f"property {spec.name} is not allowed in this packet "
                                  "(MQTT 5.0 2.2.2.2)", offset=at)
        if pid in seen and context not in spec.repeatable_in:
            raise ProtocolError(f"property {spec.name} appears more than once", offset=at)
        seen.add(pid)
        ptype = spec.type
        value: PropertyValue
        if ptype is PropertyType.BYTE:
            if pos >= stop:
                raise MalformedPacket(f"property {spec.name} runs past the property list",
                                      offset=pos)
            value = buf[pos]
            pos += 1
        elif ptype is PropertyType.TWO_BYTE:
            value, pos = read_u16(buf, pos, stop)
        elif ptype is PropertyType.FOUR_BYTE:
            value, pos = read_u32(buf, pos, stop)
        elif ptype is PropertyType.VARINT:
            value, pos = read_varint(buf, pos, stop)
        elif ptype is PropertyType.UTF8:
            value, pos = read_utf8(buf, pos, stop, spec.name)
        elif ptype is PropertyType.BINARY:
            value, pos = read_binary(buf, pos, stop, spec.name)
        else:
            key, pos = read_utf8(buf, pos, stop, "user property name")
            val, pos = read_utf8(buf, pos, stop, "user property value")
            value = (key, val)
        if spec.flag and value not in (0, 1):
            raise ProtocolError(f"property {spec.name} must be 0 or 1, not {value!r}", offset=at)
        if spec.nonzero and value == 0:
            raise ProtocolError(f"property {spec.name} must not be 0", offset=at)
        items.append((pid, value))
    return Properties(tuple(items)), pos


_RANGES = {PropertyType.BYTE: 0xFF, PropertyType.TWO_BYTE: 0xFFFF,
           PropertyType.FOUR_BYTE: 0xFFFF_FFFF, PropertyType.VARINT: MAX_VARINT}


def check_property(pid: int, value: object, context: int, seen: set[int]) -> None:
    """Raise LocalProtocolError unless ``pid: value`` may be sent in packet type ``context``.

    The sending side of the rules :func:`read_properties` enforces, so that whatever the encoder
    accepts the decoder gives back unchanged.
    """
    spec = PROPERTY_SPECS.get(pid)
    if spec is None:
        raise LocalProtocolError(f"unknown property identifier {pid!r}")
    if context not in spec.allowed_in:
        raise LocalProtocolError(f"property {spec.name} is not allowed in this packet "
                                 "(MQTT 5.0 2.2.2.2)")
    if pid in seen and context not in spec.repeatable_in:
        raise LocalProtocolError(f"property {spec.name} may be sent only once")
    seen.add(pid)
    ptype = spec.type
    limit = _RANGES.get(ptype)
    if limit is not None:
        if not isinstance(value, int):
            raise LocalProtocolError(f"property {spec.name} takes an integer, not {value!r}")
        if not 0 <= value <= limit:
            raise LocalProtocolError(f"property {spec.name} value {value} out of 0..{limit}")
        if spec.flag and value > 1:
            raise LocalProtocolError(f"property {spec.name} must be 0 or 1, not {value}")
        if spec.nonzero and value == 0:
            raise LocalProtocolError(f"property {spec.name} must not be 0")
    elif ptype is PropertyType.UTF8:
        if not isinstance(value, str):
            raise LocalProtocolError(f"property {spec.name} takes a string, not {value!r}")
    elif ptype is PropertyType.BINARY:
        if not isinstance(value, bytes | bytearray):
            raise LocalProtocolError(f"property {spec.name} takes bytes, not {value!r}")
    elif not (isinstance(value, tuple) and len(value) == 2
              and isinstance(value[0], str) and isinstance(value[1], str)):
        raise LocalProtocolError(f"property {spec.name} takes a (name, value) pair of strings, "
                                 f"not {value!r}")


def encode_properties(props: Properties, context: int | None = None) -> bytes:
    """The property length followed by the properties, in the order they are held.

    With ``context`` (a packet type, or WILL_CONTEXT) every property is first checked with
    :func:`check_property`.
    """
    if not props.items:
        return b"\x00"
    if context is not None:
        seen: set[int] = set()
        for pid, value in props.items:
            check_property(pid, value, context, seen)
    out = bytearray()
    for pid, value in props.items:
        spec = PROPERTY_SPECS[pid]
        out += encode_varint(pid)
        ptype = spec.type
        if ptype is PropertyType.BYTE:
            out.append(int(value))  # type: ignore[arg-type]
        elif ptype is PropertyType.TWO_BYTE:
            out += int(value).to_bytes(2, "big")  # type: ignore[arg-type]
        elif ptype is PropertyType.FOUR_BYTE:
            out += int(value).to_bytes(4, "big")  # type: ignore[arg-type]
        elif ptype is PropertyType.VARINT:
            out += encode_varint(int(value))  # type: ignore[arg-type]
        elif ptype is PropertyType.UTF8:
            out += encode_utf8(str(value), spec.name)
        elif ptype is PropertyType.BINARY:
            out += encode_binary(bytes(value), spec.name)  # type: ignore[arg-type]
        else:
            assert isinstance(value, tuple)
            out += (encode_utf8(value[0], "user property name")
                    + encode_utf8(value[1], "user property value"))
    return encode_varint(len(out)) + bytes(out)

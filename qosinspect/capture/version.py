"""Which MQTT version a stream speaks when its CONNECT was not captured.

Why: the protocol level is only stated in CONNECT. A capture that starts later must still be
decoded, and MQTT 5 differs from 3.1.1 in the bytes of most packets (property lists, reason
codes), so silently guessing misdecodes one or the other. Wireshark stops and flags "unknown
version"; we look for packets whose shape only one version allows, and otherwise decode with the
default the user gave (``--mqtt-version``) and say that it was assumed.

Evidence, from the MQTT 3.1.1 and 5.0 specifications (framing is the same in every version, so
packets can be delimited before the version is known):

* PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK have remaining length 2 in 3.1.x [MQTT-3.4.1]; a
  different length (reason code, properties) is MQTT 5 (5.0 section 3.4.2.1).
* CONNACK has remaining length 2 in 3.1.x; longer is MQTT 5 (properties, 5.0 section 3.2.2.3).
* DISCONNECT has remaining length 0 in 3.1.x [MQTT-3.14.1-1]; anything else is MQTT 5. AUTH
  (type 15) exists only in MQTT 5.
* SUBSCRIBE, UNSUBSCRIBE, SUBACK and PUBLISH: decoded both ways; when exactly one version
  decodes the packet cleanly, that version. (A PUBLISH always decodes as 3.1.1, so it can only
  rule MQTT 5 out, when its property list is invalid.)

Nothing here is certain in the way a CONNECT is; the decoder reports what it inferred and from
which packet, so a reader can judge.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import MQTTError
from ..mqtt.codec import decode_body, parse_fixed_header
from ..mqtt.enums import PacketType

__all__ = ["VersionEvidence", "connect_level", "find_version_evidence", "packet_spans"]

_ACKS_LEN2 = frozenset({4, 5, 6, 7, 11})
_TRY_BOTH = frozenset({3, 8, 9, 10})


class VersionEvidence(NamedTuple):
    """``version`` (4 stands for 3.1.x, 5 for MQTT 5) and why, naming the packet type."""

    version: int
    reason: str
    packets_scanned: int


def _one(buf: bytes, first: int, start: int, end: int, version: int) -> bool:
    try:
        decode_body(buf, first, start, end, version)
    except MQTTError:
        return False
    return True


def packet_spans(buf: bytes, pos: int, max_packets: int) -> tuple[list[tuple[int, int, int]],
                                                                     bool]:
    """The complete packets framed from ``pos`` (at most ``max_packets``): ``(first byte,
    body start, end)`` each, and whether the walk stopped on an invalid remaining length
    (False: the bytes ran out, or the limit was reached)."""
    n = len(buf)
    out: list[tuple[int, int, int]] = []
    while len(out) < max_packets:
        try:
            header = parse_fixed_header(buf, pos, n)
        except MQTTError:
            return out, True
        if header is None:
            break
        first, length, hlen = header
        end = pos + hlen + length
        if end > n:
            break
        out.append((first, pos + hlen, end))
        pos = end
    return out, False


def find_version_evidence(buf: bytes, max_packets: int = 64) -> VersionEvidence | None:
    """Scan the complete packets at the start of ``buf`` (which must begin on a packet
    boundary) for a packet only one version allows; ``None`` if nothing decides."""
    spans, _ = packet_spans(buf, 0, max_packets)
    for scanned, (first, start, end) in enumerate(spans, 1):
        length = end - start
        ptype = first >> 4
        name = PacketType(ptype).name
        if ptype == 1:
            return None  # a CONNECT states its version itself
        if ptype in _ACKS_LEN2 and length != 2:
            return VersionEvidence(5, f"{name} with remaining length {length} (3.1.x: 2)",
                                   scanned)
        if ptype == 2 and length != 2:
            return VersionEvidence(5, f"CONNACK with remaining length {length} (3.1.x: 2)",
                                   scanned)
        if ptype == 14 and length:
            return VersionEvidence(5, f"DISCONNECT with remaining length {length} (3.1.x: 0)",
                                   scanned)
        if ptype == 15:
            return VersionEvidence(5, "AUTH packet (MQTT 5 only)", scanned)
        if ptype in _TRY_BOTH:
            v4 = _one(buf, first, start, end, 4)
            v5 = _one(buf, first, start, end, 5)
            if v4 != v5:
                version = 4 if v4 else 5
                label = "3.1.1" if v4 else "5.0"
                return VersionEvidence(version, f"{name} decodes only as MQTT {label}",
                                       scanned)
    return None


def connect_level(buf: bytes) -> int | None:
    """The protocol level of the CONNECT at the start of ``buf`` (3, 4 or 5), read from its
    variable header only, or ``None`` if the bytes do not show a known name and level."""
    try:
        header = parse_fixed_header(buf, 0, len(buf))
    except MQTTError:
        return None
    if header is None or header[0] != 0x10:
        return None
    pos = header[2]
    for name, levels in ((b"\x00\x04MQTT", (4, 5)), (b"\x00\x06MQIsdp", (3,))):
        stop = pos + len(name)
        if buf[pos:stop] == name and stop < len(buf) and buf[stop] in levels:
            return buf[stop]
    return None

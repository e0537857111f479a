"""Byte streams to packets: one direction of a connection, fed in chunks of any size.

A ``StreamDecoder`` is what a socket reader or a TCP reassembler feeds. It has two modes:

- strict (an endpoint): the first error raises, with its offset counted from the start of the
  stream, and the decoder refuses further input — the peer is broken and the connection must close
  with the error's reason code;
- lenient (an observer, e.g. a capture decoder): an error becomes a :class:`FramingAnomaly` in the
  output and decoding goes on. A packet whose header framed it well but whose body is invalid is
  skipped by its length. When the framing itself is lost (an impossible length, a gap in the
  stream), the decoder *resynchronises*: it looks for the next offset where a packet with valid
  fixed-header flags decodes completely and is followed by another plausible packet start (or ends
  the bytes at hand), reports how many bytes it skipped, and never invents bytes. A candidate
  that is not complete yet is waited for only if the bytes at hand can begin such a packet (a
  3.1.1 PUBACK is 2 bytes long, a PUBLISH topic is UTF-8 without wildcards, ...), so that garbage
  which merely looks like a long header cannot hold back the packets behind it. Every byte fed
  ends up in exactly one packet or one anomaly's ``size`` (or is still pending).

The protocol version is learned from CONNECT inside the stream, so packets that follow a CONNECT
in the same chunk are decoded with its version; in lenient mode a CONNECT that fails to decode
still sets the version its valid protocol name and level announce. ``ConnectionDecoder`` pairs
the two directions of one connection and shares that version between them.

MQTT 5 topic aliases are per connection and per direction [MQTT-3.3.2-10] [MQTT-3.3.2-11]: a
PUBLISH with an alias and a topic sets the alias; one with an alias and an empty topic is given
the topic the alias stands for (it keeps the alias in its properties).

Python and C: this module is the reference and keeps every rule. When the optional C accelerator
is built (:mod:`qosinspect._accel`), ``feed`` on a decoder that has neither failed nor lost its
framing runs ``_speedups.stream_feed``: the same prologue and epilogue as below, and a loop that
builds only the packets ``_decode``'s own fast path builds (short acks with a non-zero id,
PUBLISH to a topic already in the stream's cache of validated topics, 3.1.x or 5.0 with
property length 0, PINGREQ/PINGRESP). At the first other packet it hands the rest of the
bytes to ``_decode``, which decides everything else (every error included).
``tests/speedups`` checks that both give the same results on any bytes in any chunking.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _accel
from ..anomalies import AnomalyKind
from ..errors import MQTTError, PacketTooLarge, ProtocolError
from .codec import (
    _DECODERS,
    _PINGREQ,
    _PINGRESP,
    MAX_PACKET_SIZE,
    TOPIC_ALIAS_ID,
    parse_fixed_header,
    relocated,
)
from .enums import Direction, PacketType, PubAckReason, PubCompReason, PubRecReason, PubRelReason
from .packets import Connect, Packet, PubAck, PubComp, Publish, PubRec, PubRel
from .properties import NO_PROPERTIES, Properties

__all__ = [
    "ConnectionDecoder",
    "DecodeResult",
    "FramingAnomaly",
    "StreamDecoder",
    "anomaly_kind",
]

_MAX_TOPIC_ALIASES = 65535
#: While resynchronising, a candidate packet may claim at most this many bytes: garbage that
#: happens to look like a header must not make the decoder wait for megabytes.
RESYNC_MAX_PACKET = 256 * 1024
#: First byte -> (class, its Success reason code) for the acknowledgements whose short form
#: (remaining length 2, packet id only) the hot loop builds itself; None for other bytes.
_ACK_BY_FIRST: list[tuple[type, int] | None] = [None] * 256
_ACK_BY_FIRST[0x40] = (PubAck, PubAckReason.SUCCESS)
_ACK_BY_FIRST[0x50] = (PubRec, PubRecReason.SUCCESS)
_ACK_BY_FIRST[0x62] = (PubRel, PubRelReason.SUCCESS)
_ACK_BY_FIRST[0x70] = (PubComp, PubCompReason.SUCCESS)
#: First byte of a PUBLISH with valid flags -> (qos, dup, retain); None otherwise (QoS 3, DUP at
#: QoS 0 [MQTT-3.3.1-2], not a PUBLISH): those take the full decoder, which reports them.
_PUBLISH_BY_FIRST: list[tuple[int, bool, bool] | None] = [
    ((b >> 1) & 3, bool(b & 8), bool(b & 1))
    if b >> 4 == 3 and (b >> 1) & 3 != 3 and not (b & 8 and not (b >> 1) & 3) else None
    for b in range(256)]
_FIXED_FLAGS = (None, 0, 0, None, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class FramingAnomaly:
    """Something the lenient decoder could not decode, in place of packets.

    ``offset`` is the stream offset where the trouble began, ``size`` the number of bytes given
    up, ``packet_type`` the type from the fixed header when the packet was framed.
    """

    kind: AnomalyKind
    detail: str
    offset: int
    size: int = 0
    packet_type: int | None = None
    reason_code: int | None = None


DecodeResult = Packet | FramingAnomaly


def anomaly_kind(exc: MQTTError) -> AnomalyKind:
    """A stable, short name for a decode error, as the analysis reports anomalies."""
    text = exc.message
    if exc.packet_type == 0 and "reserved control packet type" in text:
        return AnomalyKind.UNASSIGNED_MSGTYPE
    if "QoS 3" in text:
        return AnomalyKind.INVALID_QOS
    if isinstance(exc, PacketTooLarge):
        return AnomalyKind.PACKET_TOO_LARGE
    name = type(exc).__name__
    return {
        "MalformedPacket": AnomalyKind.MALFORMED,
        "ProtocolError": AnomalyKind.PROTOCOL_ERROR,
        "TopicNameInvalid": AnomalyKind.INVALID_TOPIC,
        "TopicFilterInvalid": AnomalyKind.INVALID_TOPIC_FILTER,
        "UnsupportedProtocolVersion": AnomalyKind.UNSUPPORTED_VERSION,
    }.get(name, AnomalyKind.MALFORMED)


class StreamDecoder:
    """Decodes one direction of an MQTT byte stream; see the module docstring for the modes."""

    __slots__ = ("_accel", "_aliases", "_chunks", "_failed", "_need", "_offset", "_pending",
                 "_resync", "_topics", "lenient", "max_packet_size", "sizes", "version",
                 "version_known")

    def __init__(self, version: int = 4, *, lenient: bool = False,
                 max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.version = version
        #: True once a CONNECT in this stream (or the caller) settled the version.
        self.version_known = False
        self.lenient = lenient
        self.max_packet_size = max_packet_size
        #: Sizes on the wire of the packets returned by the last ``feed``, in order (anomalies
        #: have no entry).
        self.sizes: list[int] = []
        # The maps and buffers below are None until first needed: a capture decoder keeps two
        # of these per open connection (25,000 of them), most of them idle, one direction
        # seeing no PUBLISH at all (docs/memory.md).
        self._chunks: list[bytes] | None = None
        self._pending = 0          # bytes in _chunks
        self._need = 0             # bytes the pending packet needs in all, when known
        self._offset = 0           # stream offset of the first byte of _chunks
        self._resync = False
        self._failed: MQTTError | None = None
        #: Validated topic names by their raw bytes (made at the first PUBLISH).
        self._topics: dict[bytes, str] | None = None
        #: MQTT 5 topic aliases of this direction (made at the first alias set).
        self._aliases: dict[int, str] | None = None
        #: The C loop (qosinspect._speedups.stream_feed) when it is used, else None.
        self._accel: Callable[[StreamDecoder, bytes | bytearray | memoryview],
                              list[DecodeResult]] | None = _FEED if _accel.enabled() else None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet consumed (gaps included)."""
        return self._offset

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a packet."""
        return self._pending

    def feed(self, data: bytes | bytearray | memoryview) -> list[DecodeResult]:
        """Add bytes; return the packets (and, lenient, anomalies) they complete, in order.

        With the C accelerator, ``bytes`` fed to a decoder that has neither failed nor lost
        its framing go to ``_speedups.stream_feed``, which does what the code below does,
        decodes the common packets itself and calls :meth:`_decode` for the rest of the bytes
        at the first packet it does not take.
        """
        accel = self._accel
        if accel is not None and type(data) is bytes and self._failed is None and not self._resync:
            return accel(self, data)
        if self._failed is not None:
            raise self._failed
        sizes: list[int] = []
        self.sizes = sizes
        if not data:
            return []
        chunks = self._chunks
        if chunks:
            chunks.append(bytes(data))
            self._pending += len(data)
            if self._pending < self._need:
                return []
            buf = b"".join(chunks)
            self._chunks = None
            self._pending = 0
        else:
            buf = data if type(data) is bytes else bytes(data)
        out: list[DecodeResult] = []
        n = len(buf)
        pos = 0
        if self._resync:
            pos = self._resynchronise(buf, pos, out)
        if self._resync:
            n = pos  # no packet boundary found yet: keep the rest for the next bytes
        self._need = 0
        pos = self._decode(buf, pos, n, out, sizes)
        if pos < len(buf):
            rest = buf[pos:]
            self._chunks = [rest]
            self._pending = len(rest)
        self._offset += pos
        return out

    def _decode(self, buf: bytes, pos: int, n: int, out: list[DecodeResult], sizes: list[int],
                *, _new: Any = tuple.__new__, _acks: Any = _ACK_BY_FIRST,
                _publishes: Any = _PUBLISH_BY_FIRST, _publish: type = Publish,
                _no_props: Properties = NO_PROPERTIES, _decoders: Any = _DECODERS) -> int:
        """Decode the packets of ``buf[pos:n]`` into ``out`` and ``sizes``; return where it
        stopped (an incomplete packet, whose size is then in ``_need`` when known, or a loss of
        framing not yet resolved).

        This is the decoder's hot path (a capture is mostly PUBLISH and 4-byte acks, a few per
        TCP segment), written as one loop in one call: the keyword defaults are constants bound
        once, so they are locals for free; a short acknowledgement and a PUBLISH to a topic
        already seen on this stream are built in the loop itself, anything else goes to the
        full decoder, which has the final word.
        """
        topics = self._topics
        version = self.version
        # A packet within ``size_guard`` body bytes cannot exceed the maximum packet size (its
        # fixed header is at most 5 bytes): one comparison in the common case.
        max_size = self.max_packet_size
        size_guard = max_size - 5
        # The PUBLISH fast path reads no properties: before MQTT 5 there are none; in MQTT 5 it
        # takes only a property length of 0 (the commonest case), else the full decoder.
        v5 = version >= 5
        append = out.append
        size_append = sizes.append
        last = n - 2  # a packet is at least 2 bytes long
        while pos <= last:
            first = buf[pos]
            length = buf[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif n - pos > 2 and 0 < buf[pos + 2] < 0x80:
                length = (length & 0x7F) | (buf[pos + 2] << 7)
                start = pos + 3
            else:
                try:
                    header = parse_fixed_header(buf, pos, n)
                except MQTTError as exc:
                    if not self._framing_lost(exc, pos, out):
                        raise self._fail(exc, self._offset) from None
                    pos = self._resynchronise(buf, pos + 1, out, skipped_from=pos)
                    if self._resync:
                        break
                    continue
                if header is None:
                    break
                length = header[1]
                start = pos + header[2]
            end = start + length
            if length > size_guard and end - pos > max_size:
                too_large = PacketTooLarge(f"packet of {end - pos} bytes exceeds the maximum "
                                           f"packet size {max_size}", offset=pos,
                                           packet_type=first >> 4)
                if not self._framing_lost(too_large, pos, out):
                    raise self._fail(too_large, self._offset)
                pos = self._resynchronise(buf, pos + 1, out, skipped_from=pos)
                if self._resync:
                    break
                continue
            if end > n:
                self._need = end - pos
                break
            if length == 2:  # the short form of PUBACK, PUBREC, PUBREL, PUBCOMP
                ack = _acks[first]
                if ack is not None:
                    pid = (buf[start] << 8) | buf[start + 1]
                    if pid:
                        append(_new(ack[0], (pid, ack[1], _no_props)))
                        size_append(4)
                        pos = end
                        continue
            else:
                flags = _publishes[first]
                if flags is not None and length > 2:  # topic length and at least one byte
                    if topics is None:
                        topics = self._topics = {}
                    tstop = start + 2 + ((buf[start] << 8) | buf[start + 1])
                    topic = topics.get(buf[start + 2:tstop])
                    if topic is not None:
                        qos = flags[0]
                        if not qos:
                            pid = None
                        elif tstop + 2 <= end:
                            pid = (buf[tstop] << 8) | buf[tstop + 1]
                            tstop += 2
                        else:
                            pid = 0
                        if v5:
                            if tstop >= end or buf[tstop]:
                                pid = 0  # properties to read: the full decoder does it
                            tstop += 1
                        # (a topic running past the packet may have matched bytes behind it)
                        if pid != 0 and tstop <= end:  # pid None (QoS 0) or a valid id
                            append(_new(_publish, (topic, buf[tstop:end], qos, flags[1],
                                                   flags[2], pid, _no_props)))
                            size_append(end - pos)
                            pos = end
                            continue
            try:
                packet = _decoders[first >> 4](buf, first & 0x0F, start, end, version, topics)
                if first < 0x40:
                    if first < 0x20:
                        version = self._learn_version(packet)
                        v5 = version >= 5
                    elif first >= 0x30 and v5 and packet.properties:
                        packet = self._resolve_alias(packet, pos)
            except MQTTError as exc:
                if exc.packet_type is None:
                    exc.packet_type = first >> 4
                if not self.lenient:
                    raise self._fail(exc, self._offset) from None
                append(FramingAnomaly(anomaly_kind(exc), _describe(exc), self._offset + pos,
                                      end - pos, first >> 4, exc.reason_code))
                if first >> 4 == 1:
                    # A broken CONNECT still says which protocol its sender speaks: the rest
                    # of the connection is read in that version (as Wireshark does).
                    level = _connect_level(buf, start, end)
                    if level is not None:
                        self.version = version = level
                        v5 = version >= 5
                        self.version_known = True
                        self._aliases = None
                pos = end
                continue
            append(packet)
            size_append(end - pos)
            pos = end
        return pos


    def gap(self, missing: int = 0) -> list[FramingAnomaly]:
        """Bytes went missing before the next ``feed``: drop any partial packet, resynchronise.

        Returns an anomaly for a partial packet that the gap cut off.
        """
        out: list[FramingAnomaly] = []
        if self._pending:
            out.append(self._partial_anomaly("a gap in the stream cut it off"))
        self._offset += self._pending + missing
        self._chunks = None
        self._pending = 0
        self._need = 0
        self._resync = True
        return out

    def finish(self) -> list[FramingAnomaly]:
        """The stream ended: report a packet left incomplete (or bytes never resynchronised)."""
        out: list[FramingAnomaly] = []
        if self._pending:
            if self._resync:
                out.append(FramingAnomaly(
                    AnomalyKind.RESYNC, f"skipped {self._pending} bytes without finding a packet "
                    "boundary before the stream ended", self._offset, self._pending))
            else:
                out.append(self._partial_anomaly("the stream ended before it was complete"))
            self._offset += self._pending
            self._chunks = None
            self._pending = 0
            self._need = 0
        return out

    def _partial_anomaly(self, why: str) -> FramingAnomaly:
        head = self._chunks[0] if self._chunks else b""
        ptype = head[0] >> 4 if head else None
        name = PacketType(ptype).name if ptype is not None else "packet"
        expected = f" of {self._need}" if self._need else ""
        return FramingAnomaly(AnomalyKind.TRUNCATED,
                              f"{name}: {self._pending}{expected} bytes, {why}",
                              self._offset, self._pending, ptype)

    # -- failing, versions, aliases -----------------------------------------------------------

    def _fail(self, exc: MQTTError, base: int) -> MQTTError:
        """The error, placed at its offset in the stream; remembered: the stream is over."""
        if exc.offset is not None:
            exc = relocated(exc, exc.offset + base)
        self._failed = exc
        return exc

    def _learn_version(self, packet: Connect) -> int:
        self.version = packet.protocol_version
        self.version_known = True
        self._aliases = None
        return self.version

    def _resolve_alias(self, packet: Publish, pos: int) -> Publish:
        alias = None
        for pid, value in packet.properties.items:
            if pid == TOPIC_ALIAS_ID:
                alias = value
                break
        if alias is None:
            return packet
        assert isinstance(alias, int)
        aliases = self._aliases
        if packet.topic:
            if aliases is None:
                aliases = self._aliases = {}
            if len(aliases) < _MAX_TOPIC_ALIASES or alias in aliases:
                aliases[alias] = packet.topic
            return packet
        topic = aliases.get(alias) if aliases is not None else None
        if topic is None:
            raise ProtocolError(f"PUBLISH uses topic alias {alias}, which was never set on "
                                "this connection [MQTT-3.3.2-12]", offset=pos,
                                packet_type=PacketType.PUBLISH)
        return packet._replace(topic=topic)

    # -- losing and finding the framing -----------------------------------------------------------

    def _framing_lost(self, exc: MQTTError, pos: int, out: list[DecodeResult]) -> bool:
        """Record a framing loss in lenient mode; False in strict mode (the caller raises)."""
        if not self.lenient:
            return False
        out.append(FramingAnomaly(anomaly_kind(exc), _describe(exc) + "; resynchronising",
                                  self._offset + pos, 0, exc.packet_type, exc.reason_code))
        self._resync = True
        return True

    def _resynchronise(self, buf: bytes, pos: int, out: list[DecodeResult],
                       skipped_from: int | None = None) -> int:
        """Find the next plausible packet start at or after ``pos``; report skipped bytes.

        ``skipped_from`` is where the bytes given up begin when that is before ``pos`` (the
        first byte of the packet whose framing was lost), so that they are reported too.
        """
        n = len(buf)
        start = pos if skipped_from is None else skipped_from
        version = self.version
        while pos < n:
            verdict = _plausible_at(buf, pos, n, version)
            if verdict is None:       # can't tell yet: wait for more bytes
                break
            if verdict:
                self._resync = False
                break
            pos += 1
        if pos > start:
            out.append(FramingAnomaly(
                AnomalyKind.RESYNC, f"skipped {pos - start} bytes to find the next packet boundary",
                self._offset + start, pos - start))
        if self._resync and n - pos > RESYNC_MAX_PACKET:
            # Nothing plausible in a long stretch: give it up rather than hold it all.
            out.append(FramingAnomaly(AnomalyKind.RESYNC, f"skipped {n - pos} bytes without "
                                      "finding a packet boundary", self._offset + pos, n - pos))
            pos = n
        return pos


def _plausible_at(buf: bytes, pos: int, n: int, version: int) -> bool | None:
    """Whether a packet plausibly starts at ``pos``: True, False, or None (need more bytes)."""
    first = buf[pos]
    ptype = first >> 4
    if not _flags_ok(first, version):
        return False
    try:
        header = parse_fixed_header(buf, pos, n)
    except MQTTError:
        return False
    if header is None:
        return None
    end = pos + header[1] + header[2]
    if end - pos > RESYNC_MAX_PACKET:
        return False
    if end > n:
        # Incomplete: worth waiting for only if what is here can begin such a packet (garbage
        # that merely looks like a header must not hold back the real packets behind it).
        return None if _shape_ok(buf, first, pos + header[2], header[1], n, version) else False
    try:
        _DECODERS[ptype](buf, first & 0x0F, pos + header[2], end, version, None)
    except MQTTError:
        return False
    return end == n or _flags_ok(buf[end], version)


_ACK_REASONS = {4: frozenset(PubAckReason), 5: frozenset(PubRecReason),
                6: frozenset(PubRelReason), 7: frozenset(PubCompReason)}
_MQTT_NAMES = (b"\x00\x04MQTT", b"\x00\x06MQIsdp")
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _shape_ok(buf: bytes, first: int, start: int, length: int, n: int, version: int) -> bool:
    """Can an incomplete packet of ``length`` body bytes, ``buf[start:n]`` of them at hand, be
    valid? Checks what needs no more bytes: fixed lengths, the protocol name, packet ids, reason
    codes, the topic of a PUBLISH."""
    ptype = first >> 4
    have = buf[start:min(n, start + length)]
    if ptype in (12, 13) or (ptype == 14 and version < 5):
        return length == 0
    if ptype in (2, 4, 5, 6, 7, 11) and version < 5:
        return length == 2
    if 4 <= ptype <= 7:
        if len(have) >= 2 and not (have[0] or have[1]):
            return False
        return len(have) < 3 or have[2] in _ACK_REASONS[ptype]
    if ptype == 1:
        return any(name.startswith(have[:len(name)]) for name in _MQTT_NAMES)
    if ptype in (8, 9, 10, 11):
        return length >= 3 and not (len(have) >= 2 and not (have[0] or have[1]))
    if ptype == 3:
        if length < 2:
            return False
        if len(have) < 2:
            return True
        stop = 2 + ((have[0] << 8) | have[1])
        if stop + (2 if first & 0x06 else 0) > length:
            return False
        topic = have[2:stop]
        try:  # incrementally: a character cut off at the end of the bytes at hand is no error
            text = _utf8_decoder().decode(topic, final=len(have) >= stop)
        except UnicodeDecodeError:
            return False
        return not ("+" in text or "#" in text or "\x00" in text)
    return True


def _connect_level(buf: bytes, start: int, end: int) -> int | None:
    """The protocol level a CONNECT body announces, if its name and level are valid."""
    if end - start >= 7 and buf[start:start + 6] == b"\x00\x04MQTT" and buf[start + 6] in (4, 5):
        return buf[start + 6]
    if end - start >= 9 and buf[start:start + 8] == b"\x00\x06MQIsdp" and buf[start + 8] == 3:
        return 3
    return None


def _flags_ok(first: int, version: int) -> bool:
    ptype = first >> 4
    if ptype == 0 or (ptype == 15 and version < 5):
        return False
    want = _FIXED_FLAGS[ptype]
    if want is None:
        return ptype != 3 or (first & 0x06) != 0x06
    flags = first & 0x0F
    # MQTT 3.1 let PUBREL, SUBSCRIBE and UNSUBSCRIBE carry DUP as well as QoS 1.
    return flags == want or (version == 3 and want == 2 and flags == 0x0A)


def _describe(exc: MQTTError) -> str:
    name = PacketType(exc.packet_type).name if exc.packet_type is not None else "packet"
    return f"{name}: {exc.message}"


class ConnectionDecoder:
    """Both directions of one connection, sharing the protocol version.

    ``version`` is the level to assume until a CONNECT is seen (``version_known`` says whether
    it was seen or given as known).
    """

    def __init__(self, version: int = 4, *, version_known: bool = False, lenient: bool = True,
                 max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.c2b = StreamDecoder(version, lenient=lenient, max_packet_size=max_packet_size)
        self.b2c = StreamDecoder(version, lenient=lenient, max_packet_size=max_packet_size)
        self.c2b.version_known = self.b2c.version_known = version_known

    @property
    def version(self) -> int:
        return self.c2b.version if self.c2b.version_known else self.b2c.version

    @property
    def version_known(self) -> bool:
        return self.c2b.version_known or self.b2c.version_known

    def set_version(self, version: int, *, known: bool = True) -> None:
        for dec in (self.c2b, self.b2c):
            dec.version = version
            dec.version_known = known

    def stream(self, direction: Direction) -> StreamDecoder:
        return self.c2b if direction is Direction.C2B else self.b2c

    def feed(self, direction: Direction, data: bytes | bytearray | memoryview
             ) -> list[DecodeResult]:
        """Feed one direction; packet sizes are then in ``stream(direction).sizes``."""
        dec = self.c2b if direction is Direction.C2B else self.b2c
        had = dec.version_known
        out = dec.feed(data)
        if dec.version_known and not had:
            other = self.b2c if dec is self.c2b else self.c2b
            other.version = dec.version
            other.version_known = True
        return out

    def gap(self, direction: Direction, missing: int = 0) -> list[FramingAnomaly]:
        return self.stream(direction).gap(missing)

    def finish(self) -> list[tuple[Direction, FramingAnomaly]]:
        return [(d, a) for d in (Direction.C2B, Direction.B2C)
                for a in self.stream(d).finish()]


#: ``_speedups.stream_feed`` once configured with this module's classes and tables, else None.
_FEED: Any = None
if _accel.speedups is not None:
    _accel.speedups.configure_framing(StreamDecoder, _ACK_BY_FIRST, _PUBLISH_BY_FIRST, Publish,
                                      NO_PROPERTIES, _PINGREQ, _PINGRESP)
    _FEED = _accel.speedups.stream_feed
